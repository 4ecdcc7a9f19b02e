-- ListIngestJobs.key_prefix: jobs.object_key compares byte-wise ("C"), as objects.object_key
-- already does, so a prefix is one range of jobs_object_idx (rebuilt by this statement) and a
-- job joins the object catalog on that index. No table rewrite: only the collation changes.
ALTER TABLE jobs ALTER COLUMN object_key TYPE text COLLATE "C";
