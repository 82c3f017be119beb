-- wrk script: GET Patient/<id>/$everything?_count=1000 for golden resident ids read from the
-- file named by IDS (one per line).
local token = os.getenv("TOKEN")
local ids = {}
for line in io.lines(os.getenv("IDS")) do ids[#ids + 1] = line end
request = function()
  local id = ids[math.random(1, #ids)]
  return wrk.format("GET", "/fhir/Patient/" .. id .. "/$everything?_count=1000",
    { ["Authorization"] = "Bearer " .. token })
end
