-- wrk script: load RESIDENTS synthetic residents, each a Patient (bench-<n>, identifier
-- BENCH-<n>) and 9 Observations (3 each of heart rate, body weight and glucose, one a year
-- from 2017), with PUT to fixed ids so a run is repeatable. Threads share the residents
-- (resident n goes to thread n mod THREADS); a thread that is done touches DONE_DIR/<tid>.
local token = os.getenv("TOKEN")
local residents = tonumber(os.getenv("RESIDENTS") or "100000")
local threads = tonumber(os.getenv("THREADS") or "2")
local done_dir = os.getenv("DONE_DIR")
local n_thread = 0

function setup(thread)
  thread:set("tid", n_thread)
  n_thread = n_thread + 1
end

local codes = {
  { "8867-4", "Heart rate", 60, 40, "/min", "/min", "vital-signs" },
  { "29463-7", "Body weight", 50, 40, "kg", "kg", "vital-signs" },
  { "2345-7", "Glucose [Mass/volume] in Serum or Plasma", 4, 6, "mmol/L", "mmol/L", "laboratory" },
}
local headers = nil
local resident = nil
local step = 0
local finished = false

local function patient(n)
  local sex = (n % 2 == 0) and "female" or "male"
  local body = string.format(
    '{"resourceType":"Patient","id":"bench-%d","identifier":[{"system":"urn:oid:2.16.156.10011.1.13","value":"BENCH-%07d"}],"active":true,"name":[{"family":"测试","given":["%d号"]}],"gender":"%s","birthDate":"%d-%02d-%02d","address":[{"city":"成都市","district":"锦江区"}]}',
    n, n, n, sex, 1940 + n % 70, 1 + n % 12, 1 + n % 28)
  return wrk.format("PUT", "/fhir/Patient/bench-" .. n, headers, body)
end

local function observation(n, k)
  local c = codes[(k % 3) + 1]
  local value = c[3] + ((n * 7 + k * 13) % (c[4] * 10)) / 10
  local body = string.format(
    '{"resourceType":"Observation","id":"bench-%d-%d","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"%s"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"%s","display":"%s"}]},"subject":{"reference":"Patient/bench-%d"},"effectiveDateTime":"%d-%02d-%02dT09:30:00+08:00","valueQuantity":{"value":%.1f,"unit":"%s","system":"http://unitsofmeasure.org","code":"%s"}}',
    n, k, c[7], c[1], c[2], n, 2017 + k, 1 + n % 12, 1 + n % 28, value, c[5], c[6])
  return wrk.format("PUT", "/fhir/Observation/bench-" .. n .. "-" .. k, headers, body)
end

function request()
  -- wrk takes one request from a thread before the run and never sends it: make that one a
  -- health check, not a resident.
  if headers == nil then
    headers = {}
    return wrk.format("GET", "/healthz")
  end
  if resident == nil then
    headers = {
      ["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/fhir+json",
      ["Prefer"] = "return=minimal",
    }
    resident = tid
  end
  if resident >= residents then
    if not finished then
      finished = true
      local f = io.open(done_dir .. "/" .. tid, "w")
      f:close()
    end
    return wrk.format("GET", "/healthz")
  end
  local req
  if step == 0 then
    req = patient(resident)
  else
    req = observation(resident, step - 1)
  end
  step = step + 1
  if step == 10 then
    step = 0
    resident = resident + threads
  end
  return req
end
