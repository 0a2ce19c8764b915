//! The syntax guard in front of the SIP stack, on every transport: malformed input gets
//! a 400 where one can be addressed, and is otherwise dropped, before rsipstack sees it.
//!
//! rsipstack 0.7.14 drops an unparsable UDP datagram silently at debug level and
//! accepts a Content-Length larger than the body (it takes what is there). RFC 3261
//! §18.3 and §8.2 want a 400 for both, so a caller's broken phone learns why, and an
//! operator sees it in the log. Requests its dialog layer cannot build a dialog from
//! (an INVITE without a From tag or a readable Contact) drew a 500 from our server; they
//! get their 400 here. This module is the fix "in our layer": a pure [`inspect`] that is
//! unit-tested and fuzzed, used by [`crate::sip::policy::Policy`] for UDP datagrams
//! ([`GuardedUdp`]) and for each message framed off a TCP or TLS connection.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::SipMessage;

use crate::sip::policy::{Decision, Policy};
use crate::sip::stack::ALLOWED;

/// What to do with one received datagram.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Well formed: pass it to the SIP stack.
    Pass,
    /// Malformed. `response` is a 400 to send back to the source, if the request
    /// carried enough (Via, From, To, Call-ID, CSeq) to address one.
    Reject {
        reason: String,
        response: Option<Vec<u8>>,
    },
}

/// The largest SIP message we accept (RFC 3261 §18.1.1 lets UDP carry up to 64 KiB; a
/// real INVITE is 1-4 KiB, so anything past this is abuse).
pub(crate) const MAX_MESSAGE: usize = 16 * 1024;

/// Headers every request must carry (RFC 3261 §8.1.1); compact forms in brackets.
const MANDATORY: [(&str, &str); 5] = [
    ("via", "v"),
    ("from", "f"),
    ("to", "t"),
    ("call-id", "i"),
    ("cseq", ""),
];

/// Methods the parser understands; any other gets 501 rather than 400.
const KNOWN_METHODS: [&str; 14] = [
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
];

/// Judge one datagram. Pure: no I/O, so the fuzz and unit tests drive it directly.
#[cfg(test)]
pub(crate) fn check_datagram(buf: &[u8]) -> Verdict {
    inspect(buf, MAX_MESSAGE).verdict
}

/// What [`inspect`] learnt about one message, besides the verdict: what the policy in
/// front of the stack (scanner list, `allow`, pike) needs, and the parse, so a stream
/// transport hands it on without parsing twice.
#[derive(Debug)]
pub(crate) struct Inspection {
    pub verdict: Verdict,
    /// The start line says `SIP/2.0 ...`: a response.
    pub is_response: bool,
    /// The request's method as written (empty for responses).
    pub method: String,
    /// The To header carries a tag: the request belongs to a dialog.
    pub in_dialog: bool,
    /// The parsed message, when the verdict is [`Verdict::Pass`].
    pub message: Option<SipMessage>,
}

/// Judge one message of at most `max` bytes (a datagram, or one framed off a stream).
pub(crate) fn inspect(buf: &[u8], max: usize) -> Inspection {
    let mut out = Inspection {
        verdict: Verdict::Pass,
        is_response: false,
        method: String::new(),
        in_dialog: false,
        message: None,
    };
    out.verdict = judge(buf, max, &mut out);
    if out.verdict != Verdict::Pass {
        out.message = None;
    }
    out
}

fn judge(buf: &[u8], max: usize, out: &mut Inspection) -> Verdict {
    if buf.len() > max {
        return reject(buf, format!("message of {} bytes is too large", buf.len()));
    }
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return reject(buf, "no blank line ends the headers".into());
    };
    let head = &buf[..head_end];
    let body_len = buf.len() - head_end - 4;
    let Ok(head_text) = std::str::from_utf8(head) else {
        return reject(buf, "headers are not UTF-8 text".into());
    };
    let mut lines = head_text.split("\r\n");
    let start = lines.next().unwrap_or_default();
    let is_response = start.starts_with("SIP/");
    out.is_response = is_response;
    if !is_response && !valid_request_line(start) {
        return reject(buf, format!("malformed request line {:?}", truncate(start)));
    }
    let method = if is_response {
        ""
    } else {
        start.split(' ').next().unwrap_or_default()
    };
    out.method = method.to_string();
    let mut seen = [false; MANDATORY.len()];
    let mut cseq_method = None;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            continue; // folded continuation (RFC 3261 §7.3.1)
        }
        let Some((name, value)) = line.split_once(':') else {
            return reject(
                buf,
                format!("header line without a colon {:?}", truncate(line)),
            );
        };
        let name = name.trim().to_ascii_lowercase();
        if !valid_token(&name) {
            // RFC 3261 §25.1: a header name is a token. "Contact <sip" is not one, and
            // letting it through hid the missing Contact from us (cause of a 500).
            return reject(buf, format!("malformed header name {:?}", truncate(&name)));
        }
        if let Some(i) = MANDATORY
            .iter()
            .position(|(long, short)| name == *long || (!short.is_empty() && name == *short))
        {
            seen[i] = true;
        }
        if (name == "to" || name == "t") && has_tag(value) {
            out.in_dialog = true;
        }
        if name == "cseq" {
            cseq_method = value.split_whitespace().nth(1).map(str::to_string);
        }
        if name == "content-length" || name == "l" {
            let Ok(declared) = value.trim().parse::<usize>() else {
                return reject(
                    buf,
                    format!("Content-Length {:?} is not a number", value.trim()),
                );
            };
            if declared > body_len {
                return reject(
                    buf,
                    format!("Content-Length {declared} is larger than the {body_len}-byte body"),
                );
            }
        }
    }
    if !is_response {
        if let Some(i) = seen.iter().position(|s| !s) {
            return reject(
                buf,
                format!("mandatory header {} is missing", MANDATORY[i].0),
            );
        }
        if cseq_method.as_deref().is_some_and(|m| m != method) {
            // RFC 3261 §8.1.1.5: the CSeq method MUST match the request's.
            return reject(
                buf,
                format!(
                    "CSeq method {:?} does not match the request's {:?}",
                    truncate(cseq_method.as_deref().unwrap_or_default()),
                    truncate(method)
                ),
            );
        }
        if !KNOWN_METHODS.contains(&method) {
            // RFC 3261 §8.2.1: a method we do not implement gets 501, with Allow.
            let response = reply_from_raw(buf, "501 Not Implemented", "unknown method");
            return Verdict::Reject {
                reason: format!("unknown method {:?}", truncate(method)),
                response,
            };
        }
    }
    match SipMessage::try_from(buf) {
        Ok(msg) => match semantic_problem(&msg) {
            None => {
                out.message = Some(msg);
                Verdict::Pass
            }
            Some(reason) => reject(buf, reason),
        },
        Err(e) => reject(buf, format!("unparsable: {e}")),
    }
}

/// RFC 3261 §25.1 token characters.
fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// Whether a From or To value carries a `tag` parameter (outside the `<...>` URI).
fn has_tag(value: &str) -> bool {
    let params = match value.rfind('>') {
        Some(i) => &value[i..],
        None => value,
    };
    params
        .split(';')
        .skip(1)
        .any(|p| p.trim().to_ascii_lowercase().starts_with("tag="))
}

/// Problems the parser lets through but the transaction or dialog layer would choke on
/// (each of these once drew a 500 from the dialog layer; issue 8).
fn semantic_problem(msg: &SipMessage) -> Option<String> {
    let (via, cseq) = match msg {
        SipMessage::Request(r) => (r.via_header().is_ok(), r.cseq_header()),
        SipMessage::Response(r) => (r.via_header().is_ok(), r.cseq_header()),
    };
    if !via {
        return Some("Via header is unreadable".into());
    }
    if !matches!(&cseq, Ok(c) if c.seq().is_ok() && c.method().is_ok()) {
        return Some("CSeq header is unreadable".into());
    }
    match msg {
        SipMessage::Request(r) if r.method == rsipstack::sip::Method::Invite => invite_problem(r),
        _ => None,
    }
}

/// What rsipstack needs to create a dialog from an INVITE (RFC 3261 §8.1.1, §12.1.1):
/// a From with a tag, readable From and To, and one readable Contact. Without these
/// `get_or_create_server_invite` fails, and the server answered 500.
fn invite_problem(r: &rsipstack::sip::Request) -> Option<String> {
    let from = match r.from_header().map(|f| f.typed()) {
        Ok(Ok(f)) => f,
        _ => return Some("From header is unreadable".into()),
    };
    if !from
        .params
        .iter()
        .any(|p| matches!(p, rsipstack::sip::Param::Tag(_)))
    {
        return Some("From header has no tag (RFC 3261 §8.1.1.3)".into());
    }
    if !matches!(r.to_header().map(|t| t.typed()), Ok(Ok(_))) {
        return Some("To header is unreadable".into());
    }
    match r.typed_contact_headers() {
        Ok(c) if !c.is_empty() => None,
        Ok(_) => Some("INVITE has no Contact header (RFC 3261 §8.1.1.8)".into()),
        Err(_) => Some("Contact header is unreadable".into()),
    }
}

fn valid_request_line(line: &str) -> bool {
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-')
        && uri.contains(':')
        && version == "SIP/2.0"
}

/// Build the rejection, with a 400 when the datagram is a request we can address.
fn reject(buf: &[u8], reason: String) -> Verdict {
    let response = reply_from_raw(buf, "400 Bad Request", &reason);
    Verdict::Reject { reason, response }
}

/// A response (400, 403, 413, 501) that copies Via, From, To, Call-ID and CSeq from the
/// raw request (§8.2.6.2), built by hand because the parser refused the message or the
/// policy answers before the stack sees it. `None` for responses and for requests that
/// lack what a response must name.
pub(crate) fn reply_from_raw(buf: &[u8], status: &str, reason: &str) -> Option<Vec<u8>> {
    let head_end = find(buf, b"\r\n\r\n").unwrap_or(buf.len().min(MAX_MESSAGE));
    let text = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = text.split("\r\n");
    let start = lines.next()?;
    if start.starts_with("SIP/") {
        return None; // responses are never answered
    }
    let mut via = Vec::new();
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" => via.push(value.to_string()),
            "from" | "f" => from = Some(value.to_string()),
            "to" | "t" => to = Some(value.to_string()),
            "call-id" | "i" => call_id = Some(value.to_string()),
            "cseq" => cseq = Some(value.to_string()),
            _ => {}
        }
    }
    if via.is_empty() {
        return None;
    }
    let (from, mut to, call_id, cseq) = (from?, to?, call_id?, cseq?);
    if !to.contains(";tag=") {
        // The same tag for a retransmission of the same request, so its answers are
        // the same response (RFC 3261 §8.2.6.2 wants one tag per response).
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&via[0], &from, &call_id, &cseq).hash(&mut h);
        to.push_str(&format!(";tag=hl{:012x}", h.finish() & 0xffff_ffff_ffff));
    }
    let phrase: String = reason
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect();
    let mut out = String::with_capacity(512);
    out.push_str(&format!("SIP/2.0 {status}\r\n"));
    for v in via {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    out.push_str(&format!(
        "From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\nAllow: {}\r\nWarning: 399 hotline \"{}\"\r\nContent-Length: 0\r\n\r\n",
        ALLOWED.map(|m| m.to_string()).join(", "),
        phrase.replace('"', "'")
    ));
    Some(out.into_bytes())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// A UDP socket that rsipstack reads through: it only ever returns datagrams that the
/// [`Policy`] passed (syntax, scanners, flood ban, `allow`), and sends the policy's
/// answers (400, 403, 501) itself.
pub(crate) struct GuardedUdp {
    socket: tokio::net::UdpSocket,
    policy: Arc<Policy>,
}

impl GuardedUdp {
    pub(crate) fn new(socket: tokio::net::UdpSocket, policy: Arc<Policy>) -> Self {
        GuardedUdp { socket, policy }
    }
}

#[async_trait::async_trait]
impl rsipstack::platform::net::UdpSocket for GuardedUdp {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        loop {
            let (len, from) = self.socket.recv_from(buf).await?;
            let packet = &buf[..len];
            // Keep-alives (RFC 5626 CRLF) and empty datagrams go through untouched.
            if packet.iter().all(|b| b.is_ascii_whitespace()) {
                return Ok((len, from));
            }
            match self.policy.judge(Instant::now(), from, "udp", packet) {
                Decision::Pass { .. } => return Ok((len, from)),
                Decision::Answer(resp) => {
                    // rport (RFC 3581): answer where it came from.
                    let _ = self.socket.send_to(&resp, from).await;
                }
                Decision::Drop | Decision::Banned => {}
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        Ok(self.socket.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::fuzz::{fuzz_cases, mutate};
    use proptest::prelude::*;

    const INVITE: &str = "INVITE sip:6289110@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:6289110@127.0.0.1>\r\n\
From: \"Li\" <sip:13800138000@127.0.0.1>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@127.0.0.1\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:13800138000@127.0.0.1:5070>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

    fn status(v: &Verdict) -> Option<String> {
        match v {
            Verdict::Reject {
                response: Some(r), ..
            } => Some(String::from_utf8_lossy(r).lines().next()?.to_string()),
            _ => None,
        }
    }

    #[test]
    fn a_well_formed_invite_passes() {
        assert_eq!(check_datagram(INVITE.as_bytes()), Verdict::Pass);
    }

    #[test]
    fn compact_headers_pass() {
        let compact = INVITE
            .replace("Via:", "v:")
            .replace("To:", "t:")
            .replace("From:", "f:")
            .replace("Call-ID:", "i:")
            .replace("Content-Length:", "l:");
        assert_eq!(check_datagram(compact.as_bytes()), Verdict::Pass);
    }

    #[test]
    fn content_length_larger_than_body_gets_400() {
        let bad = INVITE.replace("Content-Length: 4", "Content-Length: 400");
        let v = check_datagram(bad.as_bytes());
        assert_eq!(status(&v).as_deref(), Some("SIP/2.0 400 Bad Request"));
    }

    #[test]
    fn non_numeric_content_length_gets_400() {
        let bad = INVITE.replace("Content-Length: 4", "Content-Length: four");
        assert!(status(&check_datagram(bad.as_bytes())).is_some());
    }

    #[test]
    fn missing_call_id_gets_dropped_since_a_400_cannot_name_the_call() {
        let bad = INVITE.replace("Call-ID: a84b4c76e66710@127.0.0.1\r\n", "");
        match check_datagram(bad.as_bytes()) {
            Verdict::Reject { reason, response } => {
                assert!(reason.contains("call-id"), "{reason}");
                assert!(response.is_none());
            }
            v => panic!("expected a rejection, got {v:?}"),
        }
    }

    #[test]
    fn missing_max_forwards_is_tolerated() {
        let lenient = INVITE.replace("Max-Forwards: 70\r\n", "");
        assert_eq!(check_datagram(lenient.as_bytes()), Verdict::Pass);
    }

    #[test]
    fn broken_request_line_gets_400_that_echoes_the_dialog_headers() {
        let bad = INVITE.replace("INVITE sip:6289110@127.0.0.1 SIP/2.0", "INVITE  SIP/2.0");
        let v = check_datagram(bad.as_bytes());
        let Verdict::Reject {
            response: Some(resp),
            ..
        } = v
        else {
            panic!("expected a 400");
        };
        let text = String::from_utf8(resp).unwrap();
        assert!(text.starts_with("SIP/2.0 400 Bad Request\r\n"));
        assert!(text.contains("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK776asdhds;rport"));
        assert!(text.contains("Call-ID: a84b4c76e66710@127.0.0.1"));
        assert!(text.contains("CSeq: 314159 INVITE"));
        assert!(text.contains("To: <sip:6289110@127.0.0.1>;tag="));
        // The 400 we build is itself well-formed SIP.
        assert!(SipMessage::try_from(text.as_bytes()).is_ok());
    }

    #[test]
    fn unknown_method_gets_501() {
        let foo = INVITE
            .replace("INVITE sip:", "FOO sip:")
            .replace("314159 INVITE", "314159 FOO");
        let v = check_datagram(foo.as_bytes());
        assert_eq!(status(&v).as_deref(), Some("SIP/2.0 501 Not Implemented"));
    }

    #[test]
    fn rejections_allow_the_methods_the_stack_answers() {
        let foo = INVITE.replace("INVITE sip:", "FOO sip:");
        let Verdict::Reject {
            response: Some(r), ..
        } = check_datagram(foo.as_bytes())
        else {
            panic!("an addressable request gets an answer");
        };
        let text = String::from_utf8_lossy(&r);
        assert!(
            text.contains("\r\nAllow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO\r\n"),
            "{text}"
        );
    }

    #[test]
    fn request_line_without_version_gets_400() {
        let bad = INVITE.replace(
            "INVITE sip:6289110@127.0.0.1 SIP/2.0",
            "OPTIONS sip:6289110@127.0.0.1",
        );
        assert_eq!(
            status(&check_datagram(bad.as_bytes())).as_deref(),
            Some("SIP/2.0 400 Bad Request")
        );
    }

    #[test]
    fn garbage_is_dropped_without_an_answer() {
        for junk in [
            &b"\x00\x01\x02\xff\xfe"[..],
            b"hello world\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
        ] {
            match check_datagram(junk) {
                Verdict::Reject { response, .. } => assert!(response.is_none()),
                Verdict::Pass => panic!("garbage passed"),
            }
        }
    }

    #[test]
    fn oversized_message_is_rejected() {
        let mut big = INVITE.replace("Content-Length: 4", "Content-Length: 20000");
        big.push_str(&"a".repeat(20000));
        assert!(matches!(
            check_datagram(big.as_bytes()),
            Verdict::Reject { .. }
        ));
    }

    #[test]
    fn malformed_responses_are_never_answered() {
        let resp = "SIP/2.0 200 OK\r\nVia: broken\r\n\r\n";
        if let Verdict::Reject { response, .. } = check_datagram(resp.as_bytes()) {
            assert!(response.is_none());
        }
    }

    proptest! {
        // The parser entry point over mutated real messages: never a panic, and any
        // 400 we produce is itself parseable SIP.
        // HOTLINE_FUZZ_CASES=1000000 cargo test --lib sip::guard for a long run.
        #![proptest_config(ProptestConfig { cases: fuzz_cases(), .. ProptestConfig::default() })]
        #[test]
        fn mutated_messages_never_panic(edits in proptest::collection::vec((0usize..2000, 0u8..3, any::<u8>()), 0..12)) {
            let input = mutate(INVITE.as_bytes(), &edits);
            if let Verdict::Reject { response: Some(r), .. } = check_datagram(&input) {
                prop_assert!(SipMessage::try_from(r.as_slice()).is_ok());
            }
        }

        #[test]
        fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = check_datagram(&input);
        }
    }
}
