-- References are found from their target only through the search parameter that holds them
-- (`_has`, `_revinclude`, chains, and an unmerge's referrers, all of which know the referring
-- type and parameter), so the target index search_reference_target serves every lookup. The
-- index on (target_type, target_id) alone cost every reference row a B-tree insert (ingest
-- +4-6 % on PostgreSQL without it).
DROP INDEX search_reference_reverse;
