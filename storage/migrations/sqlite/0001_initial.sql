-- Initial schema. Conventions: times are UTC epoch microseconds (INTEGER), money is integer
-- micro-dollars, JSON is TEXT, booleans are 0/1. Keys compared ignoring case are stored
-- casefolded by the code (SQLite's NOCASE folds ASCII only).

CREATE TABLE loras (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id        INTEGER NOT NULL,
    name            TEXT    NOT NULL,
    name_key        TEXT    NOT NULL,
    path            TEXT    NOT NULL,
    default_scale   REAL    NOT NULL,
    trigger_words   TEXT    NOT NULL DEFAULT '[]',
    description     TEXT    NOT NULL DEFAULT '',
    description_key TEXT    NOT NULL DEFAULT '',
    nsfw            INTEGER NOT NULL DEFAULT 0 CHECK (nsfw IN (0, 1)),
    enabled         INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    version         INTEGER NOT NULL DEFAULT 1,
    uses            INTEGER NOT NULL DEFAULT 0,
    created_by      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CONSTRAINT loras_unique_name UNIQUE (guild_id, name_key)
);

-- History outlives the LoRA it describes, so no foreign key to loras.
CREATE TABLE lora_changes (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    lora_id   INTEGER NOT NULL,
    guild_id  INTEGER NOT NULL,
    lora_name TEXT    NOT NULL,
    name_key  TEXT    NOT NULL,
    actor_id  INTEGER NOT NULL,
    action    TEXT    NOT NULL CHECK (action IN ('add', 'edit', 'disable', 'enable', 'remove')),
    details   TEXT    NOT NULL DEFAULT '{}',
    at        INTEGER NOT NULL
);
CREATE INDEX lora_changes_by_lora ON lora_changes (lora_id, id);
CREATE INDEX lora_changes_by_name ON lora_changes (guild_id, name_key, id);

-- AUTOINCREMENT: job ids go into Discord custom_ids and nonces and must never be reused.
CREATE TABLE jobs (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id           INTEGER NOT NULL,
    channel_id         INTEGER NOT NULL,
    user_id            INTEGER NOT NULL,
    state              TEXT    NOT NULL CHECK (state IN ('admitted', 'submitted', 'completed',
                                                       'delivered', 'failed', 'cancelled',
                                                       'expired')),
    request            TEXT    NOT NULL,
    fal_input          TEXT    NOT NULL,
    images             INTEGER NOT NULL CHECK (images > 0),
    cost_micro_usd     INTEGER NOT NULL CHECK (cost_micro_usd >= 0),
    parent_job_id      INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    request_message_id INTEGER,
    status_message_id  INTEGER,
    result_message_id  INTEGER,
    fal_request_id     TEXT,
    fal_status_url     TEXT,
    fal_response_url   TEXT,
    fal_cancel_url     TEXT,
    result             TEXT,
    error              TEXT,
    seed               INTEGER,
    lora_ids           TEXT    NOT NULL DEFAULT '[]',
    deadline_at        INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    submitted_at       INTEGER,
    completed_at       INTEGER,
    finished_at        INTEGER
);
-- Partial indexes stay small: only live jobs, only jobs that have a result message or parent.
-- The IN list must read exactly like the queries' (alphabetical) for SQLite to use the index.
CREATE INDEX jobs_unfinished ON jobs (state)
    WHERE state IN ('admitted', 'completed', 'submitted');
CREATE UNIQUE INDEX jobs_by_result_message ON jobs (result_message_id)
    WHERE result_message_id IS NOT NULL;
CREATE INDEX jobs_by_parent ON jobs (parent_job_id) WHERE parent_job_id IS NOT NULL;
CREATE INDEX jobs_by_member ON jobs (guild_id, user_id, id);

-- One reservation per job, keyed by it. reserved → committed (delivered) or refunded
-- (failed, cancelled, expired). "forgiven" rows were reset by an admin: they no longer count
-- in the rolling window but still count as money spent. No ON DELETE action: whoever prunes
-- old jobs must decide what happens to the accounting first.
CREATE TABLE quota_ledger (
    job_id         INTEGER PRIMARY KEY REFERENCES jobs (id),
    guild_id       INTEGER NOT NULL,
    user_id        INTEGER NOT NULL,
    images         INTEGER NOT NULL CHECK (images > 0),
    cost_micro_usd INTEGER NOT NULL CHECK (cost_micro_usd >= 0),
    state          TEXT    NOT NULL CHECK (state IN ('reserved', 'committed', 'refunded')),
    forgiven       INTEGER NOT NULL DEFAULT 0 CHECK (forgiven IN (0, 1)),
    created_at     INTEGER NOT NULL,
    settled_at     INTEGER
);
CREATE INDEX quota_ledger_window ON quota_ledger (guild_id, user_id, created_at);
CREATE INDEX quota_ledger_in_flight ON quota_ledger (guild_id, user_id)
    WHERE state = 'reserved';

-- Reserved + committed spend per server and calendar month (UTC), kept in step with the
-- ledger in the same transactions, so admission reads one row instead of a month of ledger.
CREATE TABLE guild_spend (
    guild_id  INTEGER NOT NULL,
    month     TEXT    NOT NULL,
    micro_usd INTEGER NOT NULL,
    PRIMARY KEY (guild_id, month)
);

CREATE TABLE guild_settings (
    guild_id   INTEGER PRIMARY KEY,
    settings   TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE channel_settings (
    guild_id   INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    settings   TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
);

CREATE TABLE inputs (
    sha256       TEXT    PRIMARY KEY,
    url          TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    byte_size    INTEGER NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
