-- Attempts whose worker vanished (lease expired: a crash, an out-of-memory kill, kill -9).
-- A job that keeps taking its worker down ends FAILED instead of crash-looping the fleet.
ALTER TABLE jobs ADD COLUMN lost_attempts integer NOT NULL DEFAULT 0;
