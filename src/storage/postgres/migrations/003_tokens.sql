-- Bearer tokens. Only a SHA-256 hash of each secret is stored; the token itself is shown
-- once, when it is created.
CREATE TABLE api_tokens (
  token_id    text PRIMARY KEY,
  org         text NOT NULL,
  secret_hash bytea NOT NULL UNIQUE,
  name        text NOT NULL DEFAULT '',
  -- [{"bucket": "kb-prod" | "*", "role": "reader" | "writer" | "admin"}, ...]
  grants      jsonb NOT NULL,
  created_at  bigint NOT NULL,
  expires_at  bigint NOT NULL DEFAULT 0,  -- 0: never
  revoked_at  bigint NOT NULL DEFAULT 0   -- 0: not revoked
);
CREATE INDEX api_tokens_org_idx ON api_tokens (org, created_at);
