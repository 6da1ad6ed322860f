-- Budget alerts a server was sent; see ../sqlite/0003_budget_alerts.sql.
CREATE TABLE budget_alerts (
    guild_id BIGINT NOT NULL,
    month    TEXT   NOT NULL,
    kind     TEXT   NOT NULL,
    sent_at  BIGINT NOT NULL,
    PRIMARY KEY (guild_id, month, kind)
);
