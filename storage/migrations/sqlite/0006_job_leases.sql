-- Jobs are claimed work (docs/storage.md, "Leases"): the process driving a job holds its lease
-- until `lease_expires_at` (unix microseconds) and renews it while alive. A job whose lease has
-- expired, or that never had one (rows from before this migration), may be adopted by any
-- process; exactly one wins. The owner names the process (its instance and boot).
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at INTEGER;
CREATE INDEX jobs_by_lease_owner ON jobs (lease_owner) WHERE lease_owner IS NOT NULL;
