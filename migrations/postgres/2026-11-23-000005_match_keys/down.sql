DROP TABLE match_keys;
