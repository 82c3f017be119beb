DROP TABLE slot_claims;
DROP TABLE slot_places;
