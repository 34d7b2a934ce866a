-- Incidents (bot/src/incidents). Keep in step with ../sqlite/0005_incidents.sql.
-- Times are milliseconds since the Unix epoch (UTC).

-- Named counters handed out with `UPDATE … SET value = value + 1 … RETURNING value`: numbers
-- are never reused, also with several replicas opening incidents at the same moment.
CREATE TABLE counters (
    name  TEXT    PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('incident', 0);

CREATE TABLE incidents (
    number         BIGINT PRIMARY KEY,    -- INC-<number>
    title          TEXT    NOT NULL,
    severity       TEXT    NOT NULL,      -- P1..P4
    status         TEXT    NOT NULL,      -- investigating | identified | monitoring | resolved
    state          TEXT    NOT NULL,      -- open | closed
    service        TEXT,
    commander      TEXT,                  -- subjects (slack:U123)
    scribe         TEXT,
    comms          TEXT,
    requester      TEXT    NOT NULL,
    platform       TEXT    NOT NULL,      -- where it was opened and its channel lives
    origin_channel TEXT    NOT NULL,
    channel_id     TEXT,                  -- its own channel, once created
    channel_name   TEXT,
    card_id        TEXT,                  -- the pinned card in its channel
    announce_channel TEXT,                -- platform:channel of the announcement
    announce_id    TEXT,
    opened_ms      BIGINT NOT NULL,
    acked_ms       BIGINT,
    acked_by       TEXT,
    resolved_ms    BIGINT,
    closed_ms      BIGINT,
    status_ms      BIGINT NOT NULL,      -- the last status update (for reminders)
    resolution     TEXT,
    paged          BIGINT NOT NULL DEFAULT 0,  -- a PagerDuty trigger was sent
    updated_ms     BIGINT NOT NULL
);
CREATE UNIQUE INDEX incidents_channel ON incidents (platform, channel_id);
CREATE INDEX incidents_opened ON incidents (opened_ms);

-- The timeline. Every entry is also appended to the audit log (kind `incident`).
CREATE TABLE incident_events (
    id       BIGSERIAL PRIMARY KEY,
    incident BIGINT NOT NULL REFERENCES incidents (number),
    at_ms    BIGINT NOT NULL,
    actor    TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    text     TEXT    NOT NULL,
    detail   TEXT    NOT NULL             -- JSON object
);
CREATE INDEX incident_events_incident ON incident_events (incident, id);

-- Escalation steps, acknowledgement deadlines and status reminders. A timer fires once: the
-- process whose conditional update sets fired_ms acts on it (also with several replicas).
CREATE TABLE incident_timers (
    id        BIGSERIAL PRIMARY KEY,
    incident  BIGINT NOT NULL REFERENCES incidents (number),
    kind      TEXT    NOT NULL,           -- ack | escalate | remind
    step      BIGINT NOT NULL DEFAULT 0,
    due_ms    BIGINT NOT NULL,
    fired_ms  BIGINT,
    fired_by  TEXT,
    cancelled BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX incident_timers_due ON incident_timers (due_ms) WHERE fired_ms IS NULL AND cancelled = 0;
