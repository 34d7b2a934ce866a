-- Alertmanager intake (bot/src/alerts). Keep in step with ../postgres/0004_alerts.sql.
-- Times are milliseconds since the Unix epoch (UTC).

-- One row per alert group and chat channel: the group's newest state and the one message that
-- shows it. `message_id` is claimed with a conditional update (claim_owner) before posting, so
-- several replicas post exactly one message per (group_key, channel, generation).
CREATE TABLE alert_groups (
    group_key      TEXT    NOT NULL,
    channel        TEXT    NOT NULL,  -- platform:channel, e.g. slack:C0ALERTS
    group_id       TEXT    NOT NULL,  -- short id of group_key for buttons and commands
    generation     INTEGER NOT NULL,  -- +1 when a group fires again after regroup_after
    receiver       TEXT    NOT NULL,
    status         TEXT    NOT NULL,  -- firing | resolved
    severity       TEXT,
    alertname      TEXT,
    namespace      TEXT,
    notification   TEXT    NOT NULL,  -- JSON: the newest notification, normalised
    content_hash   TEXT    NOT NULL,  -- of the normalised notification: repeats change nothing
    firing_ms      INTEGER NOT NULL,  -- when this generation started firing
    resolved_ms    INTEGER,
    updated_ms     INTEGER NOT NULL,
    message_id     TEXT,
    claim_owner    TEXT,
    claim_ms       INTEGER,
    rendered_hash  TEXT,              -- what the message shows now
    digested       INTEGER NOT NULL DEFAULT 0,  -- shown in the channel digest, not on its own
    acked_by       TEXT,
    silence_id     TEXT,
    silenced_by    TEXT,
    silenced_until_ms INTEGER,
    PRIMARY KEY (group_key, channel)
);
CREATE INDEX alert_groups_channel ON alert_groups (channel, status);
CREATE INDEX alert_groups_id ON alert_groups (group_id);

-- Every alert ever received, newest state per (group, fingerprint).
CREATE TABLE alerts (
    group_key     TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    alertname     TEXT,
    severity      TEXT,
    namespace     TEXT,
    labels        TEXT    NOT NULL,  -- JSON object
    annotations   TEXT    NOT NULL,  -- JSON object
    starts_ms     INTEGER,
    ends_ms       INTEGER,
    generator_url TEXT,
    updated_ms    INTEGER NOT NULL,
    PRIMARY KEY (group_key, fingerprint)
);
CREATE INDEX alerts_status ON alerts (status, severity);

-- The digest message of a channel: one per channel, claimed like a group's message.
CREATE TABLE alert_digests (
    channel       TEXT    PRIMARY KEY,
    message_id    TEXT,
    claim_owner   TEXT,
    claim_ms      INTEGER,
    rendered_hash TEXT
);
