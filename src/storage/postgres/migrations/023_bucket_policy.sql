-- A bucket's policy (S3's PutBucketPolicy, StorageService SetBucketPolicy): a JSON document
-- of statements that allow or deny S3 actions to anyone or to named tokens, kept as it was
-- set (text: GetBucketPolicy answers the document it was given). NULL: none.
-- A request without credentials names a bucket but no organization, so buckets whose
-- policy lets anyone in (public) are also looked up by the bucket's name alone.
ALTER TABLE buckets ADD COLUMN policy text, ADD COLUMN policy_public boolean NOT NULL DEFAULT false;
CREATE INDEX buckets_public_name_idx ON buckets (name) WHERE policy_public;
