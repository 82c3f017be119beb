INSERT INTO search_string (res_type, param, value, exact, res_id)
    SELECT res_type, 'phonetic', value, exact, res_id FROM search_string
    WHERE param = 'name' AND res_type IN ('Patient', 'Person', 'Practitioner', 'RelatedPerson');
INSERT INTO search_uri (res_type, param, uri, res_id)
    SELECT res_type, 'url', uri, res_id FROM search_uri WHERE res_type = 'CodeSystem' AND param = 'system';
INSERT INTO search_token (res_type, param, code, system, res_id)
    SELECT res_type, 'version', code, system, res_id FROM search_token
    WHERE res_type = 'CapabilityStatement' AND param = 'fhirversion';
