-- wrk script: a doctor's lookup of one resident's recent results of one kind, newest first:
-- Observation?subject=Patient/bench-<n>&code=loinc|<code>&date=ge2019-01-01&_sort=-date&_count=20
-- for random residents below RESIDENTS (loaded by seed-residents.lua).
local token = os.getenv("TOKEN")
local residents = tonumber(os.getenv("RESIDENTS") or "100000")
local codes = { "8867-4", "29463-7", "2345-7" }
request = function()
  local n = math.random(0, residents - 1)
  local code = codes[math.random(1, 3)]
  return wrk.format("GET", "/fhir/Observation?subject=Patient/bench-" .. n
    .. "&code=http://loinc.org%7C" .. code .. "&date=ge2019-01-01&_sort=-date&_count=20",
    { ["Authorization"] = "Bearer " .. token })
end
