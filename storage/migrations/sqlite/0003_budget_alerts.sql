-- Budget alerts a server was sent: one row per server, calendar month (UTC, 'YYYY-MM') and kind
-- ('spend_50', 'spend_80', 'spend_100', 'fal_locked'). The row is inserted before the alert is
-- posted, in its own transaction, and the primary key lets only one process win: each alert
-- goes out at most once per month, across restarts and processes.
CREATE TABLE budget_alerts (
    guild_id INTEGER NOT NULL,
    month    TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    sent_at  INTEGER NOT NULL,
    PRIMARY KEY (guild_id, month, kind)
);
