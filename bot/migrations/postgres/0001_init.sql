-- opsbot store, PostgreSQL. Times are milliseconds since the Unix epoch (UTC).
-- Keep in step with ../sqlite/0001_init.sql: the same tables and columns on both backends.

-- Append-only audit log. Each record carries the hash of the previous record (prev_hash) and its
-- own hash over its fields and prev_hash; see bot/src/store/audit.rs for the canonical form.
-- Ids are assigned by the store (last id + 1) inside the serialised append.
CREATE TABLE audit_log (
    id          BIGINT PRIMARY KEY,
    time_ms     BIGINT  NOT NULL,
    kind        TEXT    NOT NULL,
    platform    TEXT    NOT NULL,
    channel     TEXT,
    actor       TEXT,
    text        TEXT,
    command     TEXT,
    rule        TEXT,
    outcome     TEXT,
    detail      TEXT    NOT NULL,
    duration_ms BIGINT,
    approval_id TEXT,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (time_ms);

-- Approval requests. State changes are conditional updates (WHERE state = <from>).
CREATE TABLE approvals (
    id               TEXT    PRIMARY KEY,
    requester        TEXT    NOT NULL,
    requester_groups TEXT    NOT NULL,  -- JSON array of subjects
    platform         TEXT    NOT NULL,
    channel          TEXT    NOT NULL,
    command          TEXT    NOT NULL,
    rule             TEXT    NOT NULL,
    requirement      TEXT    NOT NULL,  -- JSON {roles, count, ttl_seconds, allow_self}
    context          TEXT    NOT NULL,  -- JSON, whatever the engine needs to run it later
    state            TEXT    NOT NULL,
    created_ms       BIGINT  NOT NULL,
    expires_ms       BIGINT  NOT NULL,
    updated_ms       BIGINT  NOT NULL,
    outcome          TEXT,
    card_platform    TEXT,
    card_channel     TEXT,
    card_message     TEXT
);
CREATE INDEX approvals_state ON approvals (state, expires_ms);

CREATE TABLE approval_votes (
    approval_id TEXT    NOT NULL REFERENCES approvals (id),
    approver    TEXT    NOT NULL,
    at_ms       BIGINT  NOT NULL,
    PRIMARY KEY (approval_id, approver)
);

-- Deliveries already handled, so a platform's retries never run a command twice.
CREATE TABLE deliveries (
    platform    TEXT    NOT NULL,
    delivery_id TEXT    NOT NULL,
    seen_ms     BIGINT  NOT NULL,
    PRIMARY KEY (platform, delivery_id)
);
CREATE INDEX deliveries_seen ON deliveries (seen_ms);
