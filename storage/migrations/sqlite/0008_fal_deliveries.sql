-- fal webhook deliveries (docs/fal-webhooks.md, "How the bot receives them"): a verified
-- delivery is stored here before fal is answered 200, so a crash after the answer loses
-- nothing, and the process that drives the job (which may not be the one fal reached) finds
-- it. One row per fal request: a duplicate or a retry of the same delivery changes nothing.
-- The row goes once the job has moved past 'submitted'.
CREATE TABLE fal_deliveries (
    request_id  TEXT PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    ok          INTEGER NOT NULL CHECK (ok IN (0, 1)),
    body        TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX fal_deliveries_by_job ON fal_deliveries (job_id);
-- A delivery names the request, not the job: find the job by its request id.
CREATE INDEX jobs_by_fal_request ON jobs (fal_request_id) WHERE fal_request_id IS NOT NULL;
