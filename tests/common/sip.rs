//! SIP message text: parsing, building and stream framing (RFC 3261 sections 7, 18.3, 20).
//!
//! Deliberately small and separate from the daemon's SIP stack: the test phone must not
//! share bugs with the thing it tests.

use super::error::{PhoneError, Result};
use std::net::SocketAddr;

/// The first line of a SIP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { status: u16, reason: String },
}

/// One SIP message: start line, headers in wire order (names as received), body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipMessage {
    pub start: StartLine,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Full lower-case header name for a compact form (RFC 3261 section 7.3.3).
fn canonical(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let full = match lower.as_str() {
        "v" => "via",
        "f" => "from",
        "t" => "to",
        "i" => "call-id",
        "m" => "contact",
        "l" => "content-length",
        "c" => "content-type",
        "k" => "supported",
        "s" => "subject",
        "e" => "content-encoding",
        _ => return lower,
    };
    full.to_string()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl SipMessage {
    pub fn request(method: &str, uri: &str) -> Self {
        SipMessage {
            start: StartLine::Request {
                method: method.to_string(),
                uri: uri.to_string(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn response(status: u16, reason: &str) -> Self {
        SipMessage {
            start: StartLine::Response {
                status,
                reason: reason.to_string(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Builder form of [`SipMessage::push`].
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.push(name, value);
        self
    }

    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.headers.push((name.to_string(), value.into()));
    }

    /// Remove every header called `name` (compact forms included).
    pub fn remove(&mut self, name: &str) {
        let want = canonical(name);
        self.headers.retain(|(n, _)| canonical(n) != want);
    }

    /// Set the body and its Content-Type; Content-Length is written by [`SipMessage::to_bytes`].
    pub fn set_body(&mut self, content_type: &str, body: Vec<u8>) {
        self.remove("Content-Type");
        self.remove("Content-Length");
        self.push("Content-Type", content_type);
        self.body = body;
    }

    /// Parse one whole message (a UDP datagram, or one frame cut by [`take_stream_message`]).
    pub fn parse(data: &[u8]) -> Result<Self> {
        let (head_end, body_start) = match find(data, b"\r\n\r\n") {
            Some(i) => (i, i + 4),
            None => match find(data, b"\n\n") {
                Some(i) => (i, i + 2),
                None => return Err(PhoneError::Parse("no blank line after headers".into())),
            },
        };
        let head = std::str::from_utf8(&data[..head_end])
            .map_err(|_| PhoneError::Parse("headers are not UTF-8".into()))?;
        let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
        let first = lines
            .next()
            .ok_or_else(|| PhoneError::Parse("empty message".into()))?;
        let start = if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            let status = code
                .parse::<u16>()
                .ok()
                .filter(|s| (100..700).contains(s))
                .ok_or_else(|| PhoneError::Parse(format!("bad status line {first:?}")))?;
            StartLine::Response {
                status,
                reason: reason.to_string(),
            }
        } else {
            let mut parts = first.split(' ');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(m), Some(u), Some("SIP/2.0"), None) if !m.is_empty() && !u.is_empty() => {
                    StartLine::Request {
                        method: m.to_string(),
                        uri: u.to_string(),
                    }
                }
                _ => return Err(PhoneError::Parse(format!("bad request line {first:?}"))),
            }
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with(' ') || line.starts_with('\t') {
                // Header folding (RFC 3261 section 7.3.1).
                match headers.last_mut() {
                    Some((_, v)) => {
                        v.push(' ');
                        v.push_str(line.trim());
                    }
                    None => return Err(PhoneError::Parse("folded line before any header".into())),
                }
                continue;
            }
            let (n, v) = line
                .split_once(':')
                .ok_or_else(|| PhoneError::Parse(format!("header without colon {line:?}")))?;
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let mut msg = SipMessage {
            start,
            headers,
            body: data[body_start..].to_vec(),
        };
        if let Some(cl) = msg.header("Content-Length") {
            let n: usize = cl
                .parse()
                .map_err(|_| PhoneError::Parse(format!("bad Content-Length {cl:?}")))?;
            if n > msg.body.len() {
                return Err(PhoneError::Parse(format!(
                    "Content-Length {n} but only {} body bytes",
                    msg.body.len()
                )));
            }
            msg.body.truncate(n);
        }
        Ok(msg)
    }

    /// Wire form. Adds `Content-Length` (of the actual body) when the message has none.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        match &self.start {
            StartLine::Request { method, uri } => {
                out.push_str(&format!("{method} {uri} SIP/2.0\r\n"))
            }
            StartLine::Response { status, reason } => {
                out.push_str(&format!("SIP/2.0 {status} {reason}\r\n"))
            }
        }
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        if self.header("Content-Length").is_none() {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// First value of a header (compact forms and case are ignored).
    pub fn header(&self, name: &str) -> Option<&str> {
        let want = canonical(name);
        self.headers
            .iter()
            .find(|(n, _)| canonical(n) == want)
            .map(|(_, v)| v.as_str())
    }

    /// Every header line called `name`, in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        let want = canonical(name);
        self.headers
            .iter()
            .filter(|(n, _)| canonical(n) == want)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Every value of a list header (Via, Route, Record-Route), comma-separated lines split.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers_named(name)
            .into_iter()
            .flat_map(split_top_level_commas)
            .collect()
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }

    pub fn reason(&self) -> &str {
        match &self.start {
            StartLine::Response { reason, .. } => reason,
            StartLine::Request { .. } => "",
        }
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.header("CSeq")?;
        let (n, m) = v.trim().split_once(char::is_whitespace)?;
        Some((n.parse().ok()?, m.trim().to_string()))
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    /// `branch` parameter of the top Via.
    pub fn branch(&self) -> Option<String> {
        let top = self.header_values("Via").into_iter().next()?;
        header_param(&top, "branch")
    }

    /// `tag` parameter of From or To.
    pub fn tag(&self, header: &str) -> Option<String> {
        header_param(self.header(header)?, "tag")
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A parameter of a header value: after the `>` of a name-addr, else after the first `;`.
pub fn header_param(value: &str, name: &str) -> Option<String> {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value.split_once(';').map(|(_, p)| p).unwrap_or(""),
    };
    params
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .find_map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
}

/// The URI inside a name-addr (`"x" <sip:a@b>;tag=1` gives `sip:a@b`), or an addr-spec without params.
pub fn uri_in(value: &str) -> String {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => value[a + 1..b].to_string(),
        _ => value.split(';').next().unwrap_or("").trim().to_string(),
    }
}

/// Split a header value at commas that are not inside `<...>` or quotes.
pub fn split_top_level_commas(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut angle, mut quote) = (false, false);
    let mut cur = String::new();
    for ch in s.chars() {
        match ch {
            '"' => quote = !quote,
            '<' if !quote => angle = true,
            '>' if !quote => angle = false,
            ',' if !quote && !angle => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// A random lower-case alphanumeric token (tags, Call-IDs, branches).
pub fn random_token(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| CHARS[rand::random::<usize>() % CHARS.len()] as char)
        .collect()
}

/// A fresh Via branch with the RFC 3261 magic cookie.
pub fn new_branch() -> String {
    format!("z9hG4bK{}", random_token(16))
}

/// A response to `req` (RFC 3261 section 8.2.6): Via, From, To, Call-ID and CSeq copied,
/// a To tag added when the request had none.
pub fn response_to(req: &SipMessage, status: u16, reason: &str, to_tag: &str) -> SipMessage {
    let mut resp = SipMessage::response(status, reason);
    for via in req.headers_named("Via") {
        resp.push("Via", via);
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        if let Some(v) = req.header(name) {
            if name == "To" && header_param(v, "tag").is_none() && status != 100 {
                resp.push(name, format!("{v};tag={to_tag}"));
            } else {
                resp.push(name, v);
            }
        }
    }
    resp
}

/// Cut one message off the front of a stream buffer (RFC 3261 section 18.3: framing by
/// Content-Length). Leading CRLF keep-alives are dropped. `Ok(None)`: need more bytes.
pub fn take_stream_message(buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>> {
    let junk = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    buf.drain(..junk);
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err(PhoneError::Parse("64 KiB without end of headers".into()));
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut len = 0usize;
    for line in head.split("\r\n").skip(1) {
        if let Some((n, v)) = line.split_once(':') {
            if canonical(n) == "content-length" {
                len = v
                    .trim()
                    .parse()
                    .map_err(|_| PhoneError::Parse(format!("bad Content-Length {v:?}")))?;
            }
        }
    }
    let total = head_end + 4 + len;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(buf.drain(..total).collect()))
}

/// A raw OPTIONS from `local` with this User-Agent (scanner and flood tests).
pub fn options_request(
    local: SocketAddr,
    server: SocketAddr,
    transport: &str,
    ua: &str,
) -> Vec<u8> {
    format!(
        "OPTIONS sip:6289110@{server} SIP/2.0\r\n\
Via: SIP/2.0/{transport} {local};branch={};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:probe@{}>;tag={}\r\n\
To: <sip:6289110@{server}>\r\n\
Call-ID: {}@limits\r\n\
CSeq: 1 OPTIONS\r\n\
User-Agent: {ua}\r\n\
Content-Length: 0\r\n\r\n",
        new_branch(),
        local.ip(),
        random_token(8),
        random_token(12),
    )
    .into_bytes()
}
