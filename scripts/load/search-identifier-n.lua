-- wrk script: Patient?identifier=<system>|BENCH-<n> for random residents below RESIDENTS
-- (loaded by seed-residents.lua).
local token = os.getenv("TOKEN")
local residents = tonumber(os.getenv("RESIDENTS") or "100000")
request = function()
  local v = string.format("BENCH-%07d", math.random(0, residents - 1))
  return wrk.format("GET", "/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.13%7C" .. v,
    { ["Authorization"] = "Bearer " .. token })
end
