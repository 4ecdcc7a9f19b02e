-- Finished jobs by age, for retention pruning.
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE finished_at > 0;
