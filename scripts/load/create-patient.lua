-- wrk script: POST a synthetic Patient (distinct identifier, name, phone per request; an
-- institution record number, not an ID number).
local counter = 0
local token = os.getenv("TOKEN")
request = function()
  counter = counter + 1
  -- Distinct demographics per request, as an institution's new patients have: the resident
  -- index scores each against the golden residents sharing its birth date or phone.
  local n = math.random(1, 1000000000)
  local body = string.format('{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.156.10011.1.13","value":"BENCH-%d-%d"}],"active":true,"name":[{"family":"测试","given":["%d号"]}],"telecom":[{"system":"phone","value":"139%08d"}],"gender":"female","birthDate":"%d-%02d-%02d","address":[{"city":"成都市","district":"锦江区"}]}', n, counter, n, n % 100000000, 1930 + n % 90, 1 + n % 12, 1 + n % 28)
  return wrk.format("POST", "/fhir/Patient", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/fhir+json",
    ["Prefer"] = "return=minimal",
  }, body)
end
