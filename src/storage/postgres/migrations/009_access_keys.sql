-- S3 access keys (AWS Signature V4) ride on tokens: same organization, grants, expiry and
-- revocation. SigV4 needs the secret itself on the server, so it is stored sealed
-- (AES-256-GCM) with a key that is not in the database: a dump alone does not reveal it.
ALTER TABLE api_tokens ADD COLUMN access_key_id text UNIQUE;
ALTER TABLE api_tokens ADD COLUMN secret_sealed bytea;
