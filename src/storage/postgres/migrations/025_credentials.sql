-- Credentials (SourceService StoreCredential …): secrets an organization keeps once and
-- sources use by id. Org-scoped; the secret parts of a payload are sealed like a source's
-- secret (storage/secrets.ts), the rest (a username, an access key id, an expiry) kept in
-- the clear for lists. An external S3 source may name one (its config's credentialId)
-- instead of holding its own key pair; it reads it at each sync.
CREATE TABLE credentials (
  credential_id   text PRIMARY KEY,
  org             text NOT NULL,
  provider        text NOT NULL,
  credential_type text NOT NULL,
  display_name    text NOT NULL,
  source_id       text NOT NULL DEFAULT '',
  is_primary      boolean NOT NULL DEFAULT false,
  public_data     jsonb NOT NULL DEFAULT '{}',
  secret_sealed   text NOT NULL,
  created_at      bigint NOT NULL,
  updated_at      bigint NOT NULL
);
CREATE INDEX credentials_org_idx ON credentials (org, created_at, credential_id);
