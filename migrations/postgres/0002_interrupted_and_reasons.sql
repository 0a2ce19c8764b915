-- Crash consistency and honest statuses (issue 8).
-- calls.alive_at: the last time this daemon knew the call was alive (its start,
--   answer, connection, then a heartbeat every few seconds while it lasts). After
--   a crash, the call is closed as 'interrupted' with ended_at = alive_at.
-- calls.reason, call_attempts.reason: why a call or attempt failed on our side
--   (e.g. the voicemail folder could not be written, the volunteer's address
--   would not resolve), in words; NULL when nothing went wrong.
-- The outcome and result words gain 'interrupted'.

ALTER TABLE calls ADD COLUMN alive_at TEXT;
ALTER TABLE calls ADD COLUMN reason TEXT;
UPDATE calls SET alive_at = COALESCE(connected_at, answered_at, started_at);
ALTER TABLE calls DROP CONSTRAINT calls_outcome_check;
ALTER TABLE calls ADD CONSTRAINT calls_outcome_check
    CHECK (outcome IN ('connected', 'voicemail', 'no_answer', 'abandoned', 'failed', 'interrupted'));
CREATE INDEX calls_open ON calls (ended_at, started_at);

ALTER TABLE call_attempts ADD COLUMN reason TEXT;
ALTER TABLE call_attempts DROP CONSTRAINT call_attempts_result_check;
ALTER TABLE call_attempts ADD CONSTRAINT call_attempts_result_check
    CHECK (result IN ('answered', 'no_answer', 'busy', 'declined', 'failed', 'cancelled', 'interrupted'));
