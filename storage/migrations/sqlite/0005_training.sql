-- Training edit LoRAs from pairs. A training is an ordinary job (the same table, states and
-- ledger); what it needs beyond that is here.

-- 1. The server's budget pays for a training and its sample edit, not a member's quota: their
--    ledger rows reserve 0 images and only money. SQLite can't relax a CHECK in place, so the
--    ledger is rebuilt with the same columns and `images >= 0`. Rows with 0 images count in
--    the month's spend, never in a member's window or jobs in flight.
CREATE TABLE quota_ledger_new (
    job_id         INTEGER PRIMARY KEY REFERENCES jobs (id),
    guild_id       INTEGER NOT NULL,
    user_id        INTEGER NOT NULL,
    images         INTEGER NOT NULL CHECK (images >= 0),
    cost_micro_usd INTEGER NOT NULL CHECK (cost_micro_usd >= 0),
    state          TEXT    NOT NULL CHECK (state IN ('reserved', 'committed', 'refunded')),
    forgiven       INTEGER NOT NULL DEFAULT 0 CHECK (forgiven IN (0, 1)),
    created_at     INTEGER NOT NULL,
    settled_at     INTEGER
);
INSERT INTO quota_ledger_new (job_id, guild_id, user_id, images, cost_micro_usd, state, forgiven,
                              created_at, settled_at)
    SELECT job_id, guild_id, user_id, images, cost_micro_usd, state, forgiven, created_at,
           settled_at
      FROM quota_ledger;
DROP TABLE quota_ledger;
ALTER TABLE quota_ledger_new RENAME TO quota_ledger;
CREATE INDEX quota_ledger_window ON quota_ledger (guild_id, user_id, created_at);
CREATE INDEX quota_ledger_in_flight ON quota_ledger (guild_id, user_id)
    WHERE state = 'reserved';

-- 2. A server's draft set of pairs, built one pair at a time before a training. The images are
--    re-hosted on fal storage when added (Discord's attachment URLs expire); `inputs` is the
--    JSON list of the start images (1 to 4), `expected` the end image, both as input refs.
CREATE TABLE training_pairs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id    INTEGER NOT NULL,
    inputs      TEXT    NOT NULL,
    expected    TEXT    NOT NULL,
    instruction TEXT,
    added_by    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX training_pairs_by_guild ON training_pairs (guild_id, id);

-- 3. Which training made which LoRA, with its recipe (JSON: pairs, steps, learning rate, cost,
--    …). Written in the same transaction as the registry change, keyed by the training's job,
--    so a training registers its LoRA once however often its delivery is retried. No foreign
--    key to loras: like lora_changes, the record outlives a removed LoRA.
CREATE TABLE lora_trainings (
    job_id   INTEGER PRIMARY KEY REFERENCES jobs (id),
    lora_id  INTEGER NOT NULL,
    guild_id INTEGER NOT NULL,
    recipe   TEXT    NOT NULL,
    at       INTEGER NOT NULL
);
CREATE INDEX lora_trainings_by_lora ON lora_trainings (lora_id, at);
