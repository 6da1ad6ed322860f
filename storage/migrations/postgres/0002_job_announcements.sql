-- When a job's final state was shown to the member; see ../sqlite/0002_job_announcements.sql.
ALTER TABLE jobs ADD COLUMN announced_at BIGINT;

UPDATE jobs SET announced_at = COALESCE(finished_at, updated_at)
WHERE state IN ('delivered', 'failed', 'cancelled', 'expired');

CREATE INDEX jobs_unannounced ON jobs (id) WHERE announced_at IS NULL;
