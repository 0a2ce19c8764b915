-- `hotline selftest` calls (issue 11): the outcome words gain 'selftest'. Such a
-- call is kept so the records stay complete; reports and metrics leave it out.
-- SQLite cannot alter a CHECK, so the calls table is rebuilt with the same rows.

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
    outcome      TEXT CHECK (outcome IN ('connected', 'voicemail', 'no_answer', 'abandoned', 'failed', 'interrupted', 'selftest')),
    hangup_by    TEXT CHECK (hangup_by IN ('caller', 'volunteer', 'system')),
    voicemail    TEXT,
    alive_at     TEXT,
    reason       TEXT
);
INSERT INTO calls_new (id, call_id, caller, dialed, started_at, answered_at, station, keys,
                       volunteer, connected_at, ended_at, outcome, hangup_by, voicemail,
                       alive_at, reason)
    SELECT id, call_id, caller, dialed, started_at, answered_at, station, keys,
           volunteer, connected_at, ended_at, outcome, hangup_by, voicemail,
           alive_at, reason
    FROM calls;
DROP TABLE calls;
ALTER TABLE calls_new RENAME TO calls;
CREATE INDEX calls_started_at ON calls (started_at);
CREATE INDEX calls_open ON calls (ended_at, started_at);
