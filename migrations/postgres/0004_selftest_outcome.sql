-- `hotline selftest` calls (issue 11): the outcome words gain 'selftest'. Such a
-- call is kept so the records stay complete; reports and metrics leave it out.

ALTER TABLE calls DROP CONSTRAINT calls_outcome_check;
ALTER TABLE calls ADD CONSTRAINT calls_outcome_check
    CHECK (outcome IN ('connected', 'voicemail', 'no_answer', 'abandoned', 'failed', 'interrupted', 'selftest'));
