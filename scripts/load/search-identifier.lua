-- wrk script: GET Patient?identifier=<system>|<value> for values read from the file named by IDS.
local token = os.getenv("TOKEN")
local values = {}
for line in io.lines(os.getenv("IDS")) do values[#values + 1] = line end
request = function()
  local v = values[math.random(1, #values)]
  return wrk.format("GET", "/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.13%7C" .. v,
    { ["Authorization"] = "Bearer " .. token })
end
