-- Media quality per leg (issue 6): one row per leg when its media ends, from
-- RFC 3550's counts and the peer's RTCP reports. attempt_no 0 is the caller's
-- leg; a volunteer's leg carries the number of the attempt that reached them.
-- Times in microseconds; NULL where the peer sent no RTCP that allowed a figure.

CREATE TABLE call_quality (
    id               BIGSERIAL PRIMARY KEY,
    call_id          TEXT NOT NULL,
    attempt_no       BIGINT NOT NULL,
    leg              TEXT NOT NULL CHECK (leg IN ('caller', 'volunteer')),
    packets_sent     BIGINT NOT NULL,
    packets_received BIGINT NOT NULL,
    packets_lost     BIGINT NOT NULL,
    jitter_us        BIGINT NOT NULL,
    rtt_us           BIGINT,
    peer_lost        BIGINT,
    peer_jitter_us   BIGINT,
    rtcp_reports     BIGINT NOT NULL
);
CREATE UNIQUE INDEX call_quality_leg ON call_quality (call_id, attempt_no);
