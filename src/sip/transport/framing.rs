//! One TCP or TLS connection's bytes and timers, without I/O (RFC 3261 §18.3, §7.5;
//! RFC 5626 §3.5.1 keep-alives).
//!
//! [`Framer`] cuts whole messages off the stream by Content-Length, within the size cap.
//! [`StreamState`] adds the two connection timers: no completed request within `idle`
//! of opening or of the last request, and no partial message older than `partial`. The
//! connection task feeds it bytes and "now", and sleeps until [`StreamState::deadline`].

use std::time::{Duration, Instant};

use crate::sip::guard::reply_from_raw;

/// One unit cut off the stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A whole SIP message (headers and exactly Content-Length bytes of body).
    Message(Vec<u8>),
    /// A CRLFCRLF keep-alive ping: answer with a CRLF pong (RFC 5626 §3.5.1).
    Ping,
}

/// The stream cannot go on; send `reply` (when there is one) and close.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Broken {
    /// The headers or the declared body pass the size cap: 413 if it can be addressed.
    TooLarge { reply: Option<Vec<u8>> },
    /// Content-Length unreadable or contradictory: where the next message starts is
    /// unknown, so 400 and close.
    Unframeable { reply: Option<Vec<u8>> },
}

/// Why a connection's timers closed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    Idle,
    Partial,
}

/// Cuts SIP messages off a byte stream.
#[derive(Debug)]
pub(crate) struct Framer {
    buf: Vec<u8>,
    max: usize,
    /// How far the search for the end of the headers got (no rescans of trickled bytes).
    scanned: usize,
}

impl Framer {
    pub(crate) fn new(max: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            max,
            scanned: 0,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes of an unfinished message are waiting (CRLFs between messages do not count).
    pub(crate) fn has_partial(&self) -> bool {
        self.buf.iter().any(|b| *b != b'\r' && *b != b'\n')
    }

    /// The next unit, `Ok(None)` when more bytes are needed.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, Broken> {
        // CRLFs before a start line are ignored (RFC 3261 §7.5); CRLFCRLF is a ping.
        loop {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.consume(4);
                return Ok(Some(Frame::Ping));
            }
            match self.buf.as_slice() {
                [b'\r'] | [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] => return Ok(None),
                [b'\r', b'\n', ..] => self.consume(2),
                [b'\n', ..] => self.consume(1),
                _ => break,
            }
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let from = self.scanned.saturating_sub(3);
        let window = &self.buf[from..self.buf.len().min(self.max)];
        let Some(at) = find(window, b"\r\n\r\n") else {
            if self.buf.len() >= self.max {
                return Err(Broken::TooLarge { reply: None });
            }
            self.scanned = self.buf.len();
            return Ok(None);
        };
        let head_end = from + at + 4;
        let body = match content_length(&self.buf[..head_end]) {
            Ok(n) => n,
            Err(reason) => {
                let reply = reply_from_raw(&self.buf[..head_end], "400 Bad Request", &reason);
                return Err(Broken::Unframeable { reply });
            }
        };
        let total = head_end.saturating_add(body);
        if total > self.max {
            let reason = format!("message of {total} bytes is larger than {}", self.max);
            let reply = reply_from_raw(
                &self.buf[..head_end],
                "413 Request Entity Too Large",
                &reason,
            );
            return Err(Broken::TooLarge { reply });
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let message = self.buf[..total].to_vec();
        self.consume(total);
        Ok(Some(Frame::Message(message)))
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
        self.scanned = 0;
    }
}

/// The body length the headers declare: Content-Length or `l`, 0 when absent (the
/// stack has always read it so). Several that disagree, or one that is not a number,
/// leave the stream unframeable.
fn content_length(head: &[u8]) -> Result<usize, String> {
    let text = String::from_utf8_lossy(head);
    let mut found: Option<usize> = None;
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if !(name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l")) {
            continue;
        }
        let value = value.trim();
        let n: usize = value
            .parse()
            .map_err(|_| format!("Content-Length {:?} is not a number", trunc(value)))?;
        if found.is_some_and(|f| f != n) {
            return Err("two Content-Length headers disagree".into());
        }
        found = Some(n);
    }
    Ok(found.unwrap_or(0))
}

fn trunc(s: &str) -> String {
    s.chars().take(40).collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A connection's framer and timers.
#[derive(Debug)]
pub(crate) struct StreamState {
    framer: Framer,
    idle: Duration,
    partial: Duration,
    last_request: Instant,
    partial_since: Option<Instant>,
}

impl StreamState {
    pub(crate) fn new(now: Instant, max_message: usize, idle: Duration, partial: Duration) -> Self {
        StreamState {
            framer: Framer::new(max_message),
            idle,
            partial,
            last_request: now,
            partial_since: None,
        }
    }

    pub(crate) fn on_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.framer.push(bytes);
        if self.partial_since.is_none() && self.framer.has_partial() {
            self.partial_since = Some(now);
        }
    }

    /// The next unit; after a whole message the partial timer restarts for whatever
    /// follows it.
    pub(crate) fn next_frame(&mut self, now: Instant) -> Result<Option<Frame>, Broken> {
        let frame = self.framer.next_frame()?;
        if frame.is_some() {
            self.partial_since = self.framer.has_partial().then_some(now);
        }
        Ok(frame)
    }

    /// A request was completed and handed on: the idle timer restarts.
    pub(crate) fn request_done(&mut self, now: Instant) {
        self.last_request = now;
    }

    /// When to wake up next. A connection that carries a call (`pinned`) is never
    /// closed for idling, only for a stuck partial message.
    pub(crate) fn deadline(&self, pinned: bool) -> Option<Instant> {
        let idle = (!pinned).then(|| self.last_request + self.idle);
        let partial = self.partial_since.map(|t| t + self.partial);
        match (idle, partial) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a timer has run out at `now`.
    pub(crate) fn expired(&self, now: Instant, pinned: bool) -> Option<Expired> {
        if self.partial_since.is_some_and(|t| now >= t + self.partial) {
            return Some(Expired::Partial);
        }
        if !pinned && now >= self.last_request + self.idle {
            return Some(Expired::Idle);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::fuzz::{fuzz_cases, mutate};
    use proptest::prelude::*;

    const OPTIONS: &str = "OPTIONS sip:6289110@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:6289110@127.0.0.1>\r\nCall-ID: x1\r\n\
CSeq: 1 OPTIONS\r\nContent-Length: 4\r\n\r\nbody";

    fn frames(f: &mut Framer) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Ok(Some(fr)) = f.next_frame() {
            out.push(fr);
        }
        out
    }

    #[test]
    fn a_message_is_cut_at_its_content_length() {
        let mut f = Framer::new(16 * 1024);
        f.push(OPTIONS.as_bytes());
        f.push(OPTIONS.as_bytes());
        f.push(&OPTIONS.as_bytes()[..20]);
        let got = frames(&mut f);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Frame::Message(OPTIONS.as_bytes().to_vec()));
        assert!(f.has_partial());
    }

    #[test]
    fn a_message_trickled_a_byte_at_a_time_comes_out_whole_once() {
        let mut f = Framer::new(16 * 1024);
        let mut got = Vec::new();
        for b in OPTIONS.bytes() {
            f.push(&[b]);
            got.extend(frames(&mut f));
        }
        assert_eq!(got, vec![Frame::Message(OPTIONS.as_bytes().to_vec())]);
        assert!(!f.has_partial());
    }

    #[test]
    fn keepalive_ping_is_recognised_and_stray_crlfs_ignored() {
        let mut f = Framer::new(16 * 1024);
        f.push(b"\r\n\r\n");
        assert_eq!(f.next_frame(), Ok(Some(Frame::Ping)));
        f.push(b"\r\n");
        assert_eq!(f.next_frame(), Ok(None));
        assert!(!f.has_partial());
        f.push(OPTIONS.as_bytes());
        assert_eq!(
            frames(&mut f),
            vec![Frame::Message(OPTIONS.as_bytes().to_vec())]
        );
    }

    #[test]
    fn missing_content_length_means_no_body() {
        let msg = OPTIONS
            .replace("Content-Length: 4\r\n", "")
            .replace("body", "");
        let mut f = Framer::new(16 * 1024);
        f.push(msg.as_bytes());
        assert_eq!(frames(&mut f), vec![Frame::Message(msg.into_bytes())]);
    }

    #[test]
    fn unreadable_content_length_gets_400_and_ends_the_stream() {
        let msg = OPTIONS.replace("Content-Length: 4", "Content-Length: four");
        let mut f = Framer::new(16 * 1024);
        f.push(msg.as_bytes());
        match f.next_frame() {
            Err(Broken::Unframeable { reply: Some(r) }) => {
                assert!(
                    r.starts_with(b"SIP/2.0 400 "),
                    "{}",
                    String::from_utf8_lossy(&r)
                )
            }
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn a_declared_body_past_the_cap_gets_413() {
        let msg = OPTIONS.replace("Content-Length: 4", "Content-Length: 99999");
        let mut f = Framer::new(16 * 1024);
        f.push(msg.as_bytes());
        match f.next_frame() {
            Err(Broken::TooLarge { reply: Some(r) }) => assert!(r.starts_with(b"SIP/2.0 413 ")),
            other => panic!("expected a 413, got {other:?}"),
        }
    }

    #[test]
    fn endless_headers_are_refused_at_the_cap() {
        let mut f = Framer::new(1024);
        f.push(b"OPTIONS sip:x@y SIP/2.0\r\nX: ");
        f.push(&[b'a'; 1000]);
        assert_eq!(f.next_frame(), Err(Broken::TooLarge { reply: None }));
    }

    #[test]
    fn idle_timer_runs_from_the_last_request_and_is_held_by_a_call() {
        let t0 = Instant::now();
        let mut s = StreamState::new(t0, 16384, Duration::from_secs(32), Duration::from_secs(10));
        assert_eq!(s.deadline(false), Some(t0 + Duration::from_secs(32)));
        assert_eq!(s.expired(t0 + Duration::from_secs(31), false), None);
        s.request_done(t0 + Duration::from_secs(20));
        assert_eq!(s.expired(t0 + Duration::from_secs(40), false), None);
        assert_eq!(
            s.expired(t0 + Duration::from_secs(52), false),
            Some(Expired::Idle)
        );
        // A connection that carries a call stays.
        assert_eq!(s.expired(t0 + Duration::from_secs(600), true), None);
        assert_eq!(s.deadline(true), None);
    }

    #[test]
    fn a_partial_message_must_complete_within_its_time() {
        let t0 = Instant::now();
        let mut s = StreamState::new(t0, 16384, Duration::from_secs(32), Duration::from_secs(10));
        // Slow headers: a byte every 2 s.
        for (i, b) in OPTIONS.bytes().take(6).enumerate() {
            let t = t0 + Duration::from_secs(2 * i as u64);
            s.on_bytes(t, &[b]);
            assert_eq!(s.next_frame(t), Ok(None));
        }
        assert_eq!(s.deadline(true), Some(t0 + Duration::from_secs(10)));
        assert_eq!(
            s.expired(t0 + Duration::from_secs(10), true),
            Some(Expired::Partial)
        );
    }

    #[test]
    fn the_partial_timer_restarts_for_the_message_after_a_whole_one() {
        let t0 = Instant::now();
        let mut s = StreamState::new(t0, 16384, Duration::from_secs(32), Duration::from_secs(10));
        s.on_bytes(t0, &OPTIONS.as_bytes()[..10]);
        let t1 = t0 + Duration::from_secs(8);
        let mut rest = OPTIONS.as_bytes()[10..].to_vec();
        rest.extend_from_slice(&OPTIONS.as_bytes()[..5]);
        s.on_bytes(t1, &rest);
        assert!(matches!(s.next_frame(t1), Ok(Some(Frame::Message(_)))));
        assert_eq!(s.expired(t0 + Duration::from_secs(12), false), None);
        assert_eq!(
            s.expired(t1 + Duration::from_secs(10), false),
            Some(Expired::Partial)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: fuzz_cases(), .. ProptestConfig::default() })]

        // Any stream, cut into any reads: never a panic, never a frame past the cap,
        // and whatever comes out is the stream's own bytes in order.
        #[test]
        fn any_stream_in_any_chunks_frames_within_the_cap(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(OPTIONS.as_bytes().to_vec()),
                    Just(b"\r\n\r\n".to_vec()),
                    Just(b"\r\n".to_vec()),
                    Just(b"Content-Length: 7\r\n".to_vec()),
                    Just(b"l: 99999\r\n\r\n".to_vec()),
                    proptest::collection::vec(any::<u8>(), 0..64),
                ],
                0..24,
            ),
            cuts in proptest::collection::vec(1usize..300, 1..40),
        ) {
            let stream: Vec<u8> = parts.concat();
            let mut f = Framer::new(2048);
            let mut out: Vec<u8> = Vec::new();
            let mut at = 0;
            let mut cut = cuts.iter().cycle();
            'feed: while at < stream.len() {
                let n = (*cut.next().unwrap()).min(stream.len() - at);
                f.push(&stream[at..at + n]);
                at += n;
                loop {
                    match f.next_frame() {
                        Ok(Some(Frame::Message(m))) => {
                            prop_assert!(m.len() <= 2048);
                            out.extend_from_slice(&m);
                        }
                        Ok(Some(Frame::Ping)) => {}
                        Ok(None) => break,
                        Err(Broken::TooLarge { reply }) | Err(Broken::Unframeable { reply }) => {
                            if let Some(r) = reply {
                                prop_assert!(rsipstack::sip::SipMessage::try_from(r.as_slice()).is_ok());
                            }
                            break 'feed;
                        }
                    }
                }
            }
            // Framed messages are a subsequence of the stream, in order.
            let mut it = stream.iter();
            for b in &out {
                prop_assert!(it.any(|s| s == b));
            }
        }

        // Framing plus the guard, as a connection runs them, over mutated messages.
        #[test]
        fn mutated_streams_through_framer_and_guard_never_panic(
            edits in proptest::collection::vec((0usize..4000, 0u8..3, any::<u8>()), 0..16),
        ) {
            let v = mutate(&[OPTIONS.as_bytes(), OPTIONS.as_bytes()].concat(), &edits);
            let mut f = Framer::new(16 * 1024);
            f.push(&v);
            while let Ok(Some(frame)) = f.next_frame() {
                if let Frame::Message(m) = frame {
                    let seen = crate::sip::guard::inspect(&m, 16 * 1024);
                    if let crate::sip::guard::Verdict::Reject { response: Some(r), .. } = seen.verdict {
                        prop_assert!(rsipstack::sip::SipMessage::try_from(r.as_slice()).is_ok());
                    }
                }
            }
        }
    }
}
