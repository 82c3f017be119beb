-- wrk script: POST Patient/$match with the Patients (one JSON per line) of the file named by
-- BODIES, without their ID numbers, so the demographics score decides.
local token = os.getenv("TOKEN")
local bodies = {}
for line in io.lines(os.getenv("BODIES")) do bodies[#bodies + 1] = line end
request = function()
  local b = bodies[math.random(1, #bodies)]
  return wrk.format("POST", "/fhir/Patient/$match",
    { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/fhir+json" }, b)
end
