-- The inbox: every request opsbot acknowledged, recorded before the acknowledgement went out, so
-- each one gets a final answer also after a crash. Keep in step with ../postgres/0002_inbox.sql.
-- (platform, delivery_id) is unique: a platform's retry of a delivery is recognised here, by any
-- replica, which replaces the old `deliveries` table.
CREATE TABLE inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    platform    TEXT    NOT NULL,
    delivery_id TEXT    NOT NULL,
    kind        TEXT    NOT NULL,  -- command | click
    actor       TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    text        TEXT    NOT NULL,  -- as typed, secrets masked
    mutating    INTEGER NOT NULL,  -- 1 when it may change the cluster
    owner       TEXT    NOT NULL,  -- the opsbot process (instance id) answering it
    state       TEXT    NOT NULL,  -- received | running | answered
    outcome     TEXT,
    received_ms INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    UNIQUE (platform, delivery_id)
);
CREATE INDEX inbox_open ON inbox (state, owner);
CREATE INDEX inbox_updated ON inbox (updated_ms);

-- Running opsbot processes; a process whose heartbeat stopped has its open requests answered by
-- another (or by its successor after a restart).
CREATE TABLE instances (
    id           TEXT    PRIMARY KEY,
    started_ms   INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL
);

DROP TABLE deliveries;
