DROP TABLE protect_keys;
