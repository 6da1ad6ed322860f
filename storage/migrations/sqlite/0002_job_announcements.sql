-- When a job's final state was shown to the member (status message, 🔁 reaction). A crash between
-- storing the final state and showing it leaves this NULL, and recovery shows it then.
ALTER TABLE jobs ADD COLUMN announced_at INTEGER;

-- Jobs finished before this migration were announced by the code of their time.
UPDATE jobs SET announced_at = COALESCE(finished_at, updated_at)
WHERE state IN ('delivered', 'failed', 'cancelled', 'expired');

-- Small: finished-and-announced jobs (nearly all of them) are not in it.
CREATE INDEX jobs_unannounced ON jobs (id) WHERE announced_at IS NULL;
