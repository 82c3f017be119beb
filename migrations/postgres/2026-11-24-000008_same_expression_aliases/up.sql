-- Parameters whose expression is another parameter's (`phonetic` is `name` on Patient, Person,
-- Practitioner and RelatedPerson; CodeSystem `url` is `system`; CapabilityStatement `version`
-- is `fhirversion`) are answered from that parameter's rows: their own copies go.
DELETE FROM search_string
    WHERE param = 'phonetic' AND res_type IN ('Patient', 'Person', 'Practitioner', 'RelatedPerson');
DELETE FROM search_uri WHERE res_type = 'CodeSystem' AND param = 'url';
DELETE FROM search_token WHERE res_type = 'CapabilityStatement' AND param = 'version';
