//! Fuzzing the whole inbound path of a stream connection, as one property: bytes cut
//! into arbitrary reads, the [`Framer`](crate::sip::transport::framing::Framer), the
//! guard ([`crate::sip::guard::inspect`]), and for a passing INVITE its SDP offer
//! through [`sdp::parse`] and [`sdp::negotiate`]. Whatever the input: no panic, and
//! every answer we would write is a 4xx (or 501 for a method we do not know), never a
//! 500: malformed input is the client's fault (issue 8). An SDP we cannot use is 488.
//!
//! Each property runs `HOTLINE_FUZZ_CASES` inputs (default 20,000: [`fuzz_cases`], which
//! the guard's and the framer's own properties use too, as they use [`mutate`]);
//! `HOTLINE_FUZZ_CASES=1000000 cargo test --lib sip::fuzz` for a long run.

use proptest::prelude::*;

use crate::sip::guard::{inspect, Verdict};
use crate::sip::sdp;
use crate::sip::transport::framing::{Broken, Frame, Framer};

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n";

fn invite() -> String {
    format!(
        "INVITE sip:6289110@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:6289110@127.0.0.1>\r\n\
From: \"Li\" <sip:13800138000@127.0.0.1>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@127.0.0.1\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:13800138000@127.0.0.1:5070;transport=tcp>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

/// How many inputs a property runs: `HOTLINE_FUZZ_CASES`, or 20,000.
pub(crate) fn fuzz_cases() -> u32 {
    std::env::var("HOTLINE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// Replace, delete or insert a byte at each edit's position.
pub(crate) fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut v = base.to_vec();
    for &(pos, op, byte) in edits {
        if v.is_empty() {
            break;
        }
        let i = pos % v.len();
        match op % 3 {
            0 => v[i] = byte,
            1 => {
                v.remove(i);
            }
            _ => v.insert(i, byte),
        }
    }
    v
}

/// The status code of a response we built, which must itself be parseable SIP.
fn status_of(reply: &[u8]) -> Result<u16, TestCaseError> {
    let msg = rsipstack::sip::SipMessage::try_from(reply)
        .map_err(|e| TestCaseError::fail(format!("our reply does not parse: {e}")))?;
    match msg {
        rsipstack::sip::SipMessage::Response(r) => Ok(r.status_code.code()),
        _ => Err(TestCaseError::fail("our reply is a request")),
    }
}

fn client_fault(status: u16) -> bool {
    (400..500).contains(&status) || status == 501
}

/// One framed message as a connection handles it; the status we would answer with
/// (`None`: passed to the stack with a usable offer, or dropped unanswered).
fn judge_message(m: &[u8]) -> Result<Option<u16>, TestCaseError> {
    let seen = inspect(m, 16 * 1024);
    match seen.verdict {
        Verdict::Reject { response, .. } => response.map(|r| status_of(&r)).transpose(),
        Verdict::Pass if seen.method == "INVITE" => {
            let Some(rsipstack::sip::SipMessage::Request(req)) = seen.message else {
                return Ok(None);
            };
            let body = String::from_utf8_lossy(&req.body).to_string();
            if body.trim().is_empty() {
                return Ok(None);
            }
            // As `accept`: an offer we cannot parse or speak is 488.
            Ok(sdp::parse(&body)
                .and_then(|o| sdp::negotiate(&o))
                .err()
                .map(|_| 488))
        }
        Verdict::Pass => Ok(None),
    }
}

/// Feed `stream` in reads of the sizes in `cuts` (cycled); every status answered.
fn run_stream(stream: &[u8], cuts: &[usize]) -> Result<Vec<u16>, TestCaseError> {
    let mut f = Framer::new(16 * 1024);
    let mut answers = Vec::new();
    let mut at = 0;
    let mut cut = cuts.iter().cycle();
    while at < stream.len() {
        let n = cut.next().copied().unwrap_or(1).clamp(1, stream.len() - at);
        f.push(&stream[at..at + n]);
        at += n;
        loop {
            match f.next_frame() {
                Ok(Some(Frame::Message(m))) => answers.extend(judge_message(&m)?),
                Ok(Some(Frame::Ping)) | Ok(None) => break,
                Err(Broken::TooLarge { reply }) | Err(Broken::Unframeable { reply }) => {
                    if let Some(r) = reply {
                        answers.push(status_of(&r)?);
                    }
                    return Ok(answers);
                }
            }
        }
    }
    Ok(answers)
}

#[test]
fn the_seed_invite_passes_with_a_usable_offer() {
    let two = [invite(), invite()].concat();
    assert_eq!(
        run_stream(two.as_bytes(), &[7, 300, 1]).unwrap(),
        Vec::<u16>::new()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases(), .. ProptestConfig::default() })]

    // Two INVITEs with SDP on one connection, mutated anywhere (headers, framing,
    // body), in any reads.
    #[test]
    fn mutated_invites_on_a_stream_never_panic_and_never_get_500(
        edits in proptest::collection::vec((0usize..4000, 0u8..3, any::<u8>()), 0..16),
        cuts in proptest::collection::vec(1usize..400, 1..20),
    ) {
        let base = [invite(), invite()].concat();
        let stream = mutate(base.as_bytes(), &edits);
        for status in run_stream(&stream, &cuts)? {
            prop_assert!(client_fault(status), "answered {status}");
        }
    }

    // The SDP offer alone, mutated: parse and negotiate give an answer or an error.
    #[test]
    fn mutated_sdp_offers_never_panic(
        edits in proptest::collection::vec((0usize..600, 0u8..3, any::<u8>()), 0..12),
    ) {
        let body = mutate(SDP.as_bytes(), &edits);
        if let Ok(offer) = sdp::parse(&String::from_utf8_lossy(&body)) {
            let _ = sdp::negotiate(&offer);
        }
    }
}
