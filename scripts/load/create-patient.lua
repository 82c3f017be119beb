-- wrk script: POST a synthetic Patient (distinct identifier per request).
local counter = 0
local token = os.getenv("TOKEN")
request = function()
  counter = counter + 1
  local body = string.format('{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.156.10011.1.3","value":"BENCH-%d-%d"}],"active":true,"name":[{"family":"测试","given":["甲"]}],"telecom":[{"system":"phone","value":"13800000000"}],"gender":"female","birthDate":"1980-01-01","address":[{"city":"成都市","district":"锦江区"}]}', math.random(1, 1000000000), counter)
  return wrk.format("POST", "/fhir/Patient", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/fhir+json",
    ["Prefer"] = "return=minimal",
  }, body)
end
