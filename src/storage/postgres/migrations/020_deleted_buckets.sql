-- Buckets deleted, by name, so that nothing brings one back but creating it again.
--
-- A bucket with no row is adopted (its row made, its files catalogued) the first time it
-- is asked for, which is how folders from before buckets had rows became buckets. An
-- upload still in flight when its bucket was deleted asked for it that way, and brought
-- the deleted bucket back with the files it found. A deleted bucket's name is kept here
-- until the bucket is created again; adoption passes it by.
CREATE TABLE deleted_buckets (
  org        text NOT NULL,
  name       text NOT NULL,
  deleted_at bigint NOT NULL,
  PRIMARY KEY (org, name)
);
