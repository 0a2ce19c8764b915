-- Call records, one row per call; see src/store/mod.rs.
-- Times are TEXT in RFC 3339 UTC with milliseconds ("2026-11-28T05:00:00.123Z")
-- so that both backends store and sort them the same way.
-- Never edit this file once released: sqlx checks its checksum. Add a new file instead.

CREATE TABLE calls (
    id           BIGSERIAL PRIMARY KEY,
    -- SIP Call-ID of the caller's leg.
    call_id      TEXT NOT NULL UNIQUE,
    caller       TEXT,
    dialed       TEXT,
    started_at   TEXT NOT NULL,
    answered_at  TEXT,
    -- NULL until the caller picks a station.
    station      TEXT,
    -- Every key pressed, in order.
    keys         TEXT NOT NULL DEFAULT '',
    -- NULL until a volunteer answers.
    volunteer    TEXT,
    connected_at TEXT,
    ended_at     TEXT,
    -- NULL while the call is in progress.
    outcome      TEXT CHECK (outcome IN ('connected', 'voicemail', 'no_answer', 'abandoned', 'failed')),
    hangup_by    TEXT CHECK (hangup_by IN ('caller', 'volunteer', 'system')),
    -- Path of the voicemail recording, if any.
    voicemail    TEXT
);

CREATE INDEX calls_started_at ON calls (started_at);

-- One row per attempt to ring a volunteer.
-- call_id links to calls.call_id on purpose without a FOREIGN KEY: an attempt
-- must still be recorded if its call's first update was lost.
CREATE TABLE call_attempts (
    id         BIGSERIAL PRIMARY KEY,
    call_id    TEXT NOT NULL,
    attempt_no BIGINT NOT NULL,
    volunteer  TEXT,
    target     TEXT,
    started_at TEXT,
    ended_at   TEXT,
    result     TEXT CHECK (result IN ('answered', 'no_answer', 'busy', 'declined', 'failed', 'cancelled')),
    sip_status INTEGER
);

-- Keys an attempt for idempotent writes; call_id leads, so it is also the
-- index for looking up a call's attempts.
CREATE UNIQUE INDEX call_attempts_call_id ON call_attempts (call_id, attempt_no);
