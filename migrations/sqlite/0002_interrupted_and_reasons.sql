-- Crash consistency and honest statuses (issue 8).
-- calls.alive_at: the last time this daemon knew the call was alive (its start,
--   answer, connection, then a heartbeat every few seconds while it lasts). After
--   a crash, the call is closed as 'interrupted' with ended_at = alive_at.
-- calls.reason, call_attempts.reason: why a call or attempt failed on our side
--   (e.g. the voicemail folder could not be written, the volunteer's address
--   would not resolve), in words; NULL when nothing went wrong.
-- The outcome and result words gain 'interrupted'. SQLite cannot alter a CHECK,
-- so both tables are rebuilt with the same rows.

CREATE TABLE calls_new (
    id           INTEGER PRIMARY KEY,
    call_id      TEXT NOT NULL UNIQUE,
    caller       TEXT,
    dialed       TEXT,
    started_at   TEXT NOT NULL,
    answered_at  TEXT,
    station      TEXT,
    keys         TEXT NOT NULL DEFAULT '',
    volunteer    TEXT,
    connected_at TEXT,
    ended_at     TEXT,
    outcome      TEXT CHECK (outcome IN ('connected', 'voicemail', 'no_answer', 'abandoned', 'failed', 'interrupted')),
    hangup_by    TEXT CHECK (hangup_by IN ('caller', 'volunteer', 'system')),
    voicemail    TEXT,
    alive_at     TEXT,
    reason       TEXT
);
INSERT INTO calls_new (id, call_id, caller, dialed, started_at, answered_at, station, keys,
                       volunteer, connected_at, ended_at, outcome, hangup_by, voicemail, alive_at)
    SELECT id, call_id, caller, dialed, started_at, answered_at, station, keys,
           volunteer, connected_at, ended_at, outcome, hangup_by, voicemail,
           COALESCE(connected_at, answered_at, started_at)
    FROM calls;
DROP TABLE calls;
ALTER TABLE calls_new RENAME TO calls;
CREATE INDEX calls_started_at ON calls (started_at);
-- Finds the calls still open (at start, and for the heartbeat) without a scan.
CREATE INDEX calls_open ON calls (ended_at, started_at);

CREATE TABLE call_attempts_new (
    id         INTEGER PRIMARY KEY,
    call_id    TEXT NOT NULL,
    attempt_no INTEGER NOT NULL,
    volunteer  TEXT,
    target     TEXT,
    started_at TEXT,
    ended_at   TEXT,
    result     TEXT CHECK (result IN ('answered', 'no_answer', 'busy', 'declined', 'failed', 'cancelled', 'interrupted')),
    sip_status INTEGER,
    reason     TEXT
);
INSERT INTO call_attempts_new (id, call_id, attempt_no, volunteer, target, started_at, ended_at, result, sip_status)
    SELECT id, call_id, attempt_no, volunteer, target, started_at, ended_at, result, sip_status
    FROM call_attempts;
DROP TABLE call_attempts;
ALTER TABLE call_attempts_new RENAME TO call_attempts;
CREATE UNIQUE INDEX call_attempts_call_id ON call_attempts (call_id, attempt_no);
