-- Studio features: server presets, and sweeps (one seed over a LoRA's scales, or over the on/off
-- combinations of a stack) whose cells are ordinary jobs, posted together as one contact sheet.

-- A preset's recipe is JSON: its LoRAs by id (a renamed LoRA stays the same LoRA) with scales,
-- the prompt template and the parameters it fills in.
CREATE TABLE presets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id    INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    name_key    TEXT    NOT NULL,
    recipe      TEXT    NOT NULL,
    created_by  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    CONSTRAINT presets_unique_name UNIQUE (guild_id, name_key)
);

-- AUTOINCREMENT: sweep ids go into Discord custom_ids and nonces and must never be reused.
-- sheet_message_id is set once the contact sheet is posted; finished_at once nothing is left
-- to do (posted, or given up with `error`). Recovery continues the unfinished ones.
CREATE TABLE sweeps (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id          INTEGER NOT NULL,
    channel_id        INTEGER NOT NULL,
    user_id           INTEGER NOT NULL,
    recipe            TEXT    NOT NULL,
    parent_job_id     INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    status_message_id INTEGER,
    sheet_message_id  INTEGER,
    error             TEXT,
    created_at        INTEGER NOT NULL,
    finished_at       INTEGER
);
CREATE INDEX sweeps_unfinished ON sweeps (id) WHERE finished_at IS NULL;

-- One row per cell, written with the cell's job in the group admission's transaction. `image`
-- (JSON) is the cell's output re-hosted at fal storage, recorded before the sheet is posted.
CREATE TABLE sweep_cells (
    sweep_id INTEGER NOT NULL REFERENCES sweeps (id),
    cell     INTEGER NOT NULL,
    job_id   INTEGER NOT NULL UNIQUE REFERENCES jobs (id),
    label    TEXT    NOT NULL,
    image    TEXT,
    PRIMARY KEY (sweep_id, cell)
);
