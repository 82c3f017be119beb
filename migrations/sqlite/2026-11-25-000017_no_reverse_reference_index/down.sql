CREATE INDEX search_reference_reverse ON search_reference (target_type, target_id);
