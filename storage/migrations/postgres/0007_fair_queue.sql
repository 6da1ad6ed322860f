-- The fair queue (docs/architecture.md, "The fair queue"): with FAL_MAX_CONCURRENT set, an
-- admitted job waits until it is released (`released_at`, unix microseconds), then is
-- submitted. "At fal" is counted from the rows (released and admitted, or submitted), never
-- kept as a counter. Waiting jobs are found through their own small partial index.
ALTER TABLE jobs ADD COLUMN released_at BIGINT;
CREATE INDEX jobs_waiting ON jobs (guild_id, user_id, id)
    WHERE state = 'admitted' AND released_at IS NULL;
