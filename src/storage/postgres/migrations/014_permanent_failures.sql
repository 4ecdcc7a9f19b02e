-- Whether a FAILED job's cause is one a retry cannot fix (an unsupported type, corrupt
-- input, a limit). Constant default: no table rewrite.
ALTER TABLE jobs ADD COLUMN permanent_failure boolean NOT NULL DEFAULT false;
