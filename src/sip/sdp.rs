//! SDP offer/answer for one audio stream (RFC 4566, RFC 3264), sans I/O.
//!
//! We only ever speak G.711 (PCMU/PCMA) plus RFC 4733 telephone-event, so this is
//! a small, tolerant reader of what phones send and a writer of the few bodies we
//! need. Unknown lines and extra m= sections are skipped, never fatal: a phone that
//! adds video or ICE attributes must still reach the hotline.
//!
//! Secure audio (RTP/SAVP, RFC 3711) is keyed by SDES (RFC 4568): one `a=crypto` line
//! with AES_CM_128_HMAC_SHA1_80 and an inline key. An SAVP stream without such a line
//! is skipped like one we cannot speak; if no stream is left the call gets 488.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::media::codec::Codec;
use crate::media::srtp::{self, SdesKey, SrtpKeys};

/// Payload type we offer for telephone-event (the common choice of Asterisk and SIPp).
pub(crate) const OFFER_TELEPHONE_EVENT_PT: u8 = 101;

/// Why an SDP body could not be used; the SIP layer maps these to 400 or 488.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SdpError {
    /// No `m=audio` line with a non-zero port and an RTP/AVP profile.
    #[error("no usable audio stream in SDP")]
    NoAudio,
    /// The audio stream has no `c=` line at media or session level.
    #[error("no connection address (c=) for the audio stream")]
    NoConnection,
    /// A line we need (m=, c=, rtpmap) is malformed.
    #[error("SDP line {line}: {reason}")]
    BadLine {
        /// 1-based line number in the body.
        line: usize,
        /// What was wrong, for the log.
        reason: String,
    },
    /// Neither PCMU nor PCMA offered: answer 488 Not Acceptable Here.
    #[error("no common codec (we need PCMU or PCMA at 8000 Hz)")]
    NoCommonCodec,
    /// Secure audio we cannot key, or an answer whose security does not match our
    /// offer: 488 as well.
    #[error("SRTP: {0}")]
    Srtp(&'static str),
}

/// Stream direction attribute (RFC 3264 section 5.1); hold is signalled with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum Direction {
    /// Both ways: the default when no attribute is present.
    #[default]
    SendRecv,
    /// The sender only sends (e.g. it put us on hold with music).
    SendOnly,
    /// The sender only receives.
    RecvOnly,
    /// No media either way (full hold).
    Inactive,
}

impl Direction {
    /// The direction to answer with (RFC 3264 section 6.1): sendonly <-> recvonly.
    pub(crate) fn answer_direction(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// The SDP attribute name, as written after `a=`.
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_attribute(a: &str) -> Option<Direction> {
        match a {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

/// The parts of a remote SDP (offer or answer) that matter for one audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaOffer {
    /// Where to send RTP: the media-level `c=`, else the session-level one.
    /// `0.0.0.0` means old-style hold (RFC 3264 section 8.4).
    pub addr: IpAddr,
    /// RTP port from the `m=` line.
    pub port: u16,
    /// Payload types in `m=` order, which is the sender's preference.
    pub payloads: Vec<u8>,
    /// `a=rtpmap` entries of this stream: (payload type, encoding name, clock rate).
    pub rtpmap: Vec<(u8, String, u32)>,
    /// Payload type of telephone-event/8000 (RFC 4733) if listed in `m=`.
    pub telephone_event: Option<u8>,
    /// Direction attribute (media level overrides session level).
    pub direction: Direction,
    /// `a=ptime` in milliseconds, if given.
    pub ptime: Option<u32>,
    /// For RTP/SAVP: the `a=crypto` tag and key we can use (always Some for SAVP).
    pub crypto: Option<(u32, SdesKey)>,
}

impl MediaOffer {
    /// True when the remote puts us on hold: sendonly, inactive, or `c=0.0.0.0`.
    #[cfg(test)]
    pub(crate) fn is_hold(&self) -> bool {
        self.addr.is_unspecified()
            || matches!(self.direction, Direction::SendOnly | Direction::Inactive)
    }

    /// The direction the remote really means, folding in old-style `c=0.0.0.0` hold
    /// (RFC 3264 section 8.4: such a party does not want to receive media).
    fn effective_direction(&self) -> Direction {
        if !self.addr.is_unspecified() {
            return self.direction;
        }
        match self.direction {
            Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
            Direction::RecvOnly | Direction::Inactive => Direction::Inactive,
        }
    }

    fn rtpmap_of(&self, pt: u8) -> Option<(&str, u32)> {
        self.rtpmap
            .iter()
            .find(|(p, _, _)| *p == pt)
            .map(|(_, name, clock)| (name.as_str(), *clock))
    }

    /// The G.711 codec a payload type stands for: by rtpmap if present, else static PT.
    fn codec_of(&self, pt: u8) -> Option<Codec> {
        match self.rtpmap_of(pt) {
            Some((name, 8000)) if name.eq_ignore_ascii_case("PCMU") => Some(Codec::Pcmu),
            Some((name, 8000)) if name.eq_ignore_ascii_case("PCMA") => Some(Codec::Pcma),
            Some(_) => None,
            None => match pt {
                0 => Some(Codec::Pcmu),
                8 => Some(Codec::Pcma),
                _ => None,
            },
        }
    }
}

/// The outcome of offer/answer: what the media session must use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Negotiated {
    /// The codec both sides use.
    pub codec: Codec,
    /// The payload type the remote used for `codec`; RFC 3264 section 6.1 says we
    /// keep it in our answer and in the RTP we send (usually 0 or 8).
    pub payload_type: u8,
    /// Where to send RTP.
    pub remote: SocketAddr,
    /// The remote's telephone-event payload type, if it does RFC 4733 DTMF.
    pub telephone_event: Option<u8>,
    /// Our side's direction (already the complement of the remote's).
    pub direction: Direction,
    /// SRTP keys when the stream is RTP/SAVP (ours generated for this answer).
    pub srtp: Option<SrtpKeys>,
}

/// Reads the first audio stream with a non-zero port from an SDP body.
///
/// Tolerant of `\n` or `\r\n`, unknown lines and extra m= sections.
pub(crate) fn parse(sdp: &str) -> Result<MediaOffer, SdpError> {
    let mut session_addr: Option<IpAddr> = None;
    let mut session_dir: Option<Direction> = None;
    // Set once the chosen audio section has begun; `None` while in session level
    // or in a section we skip.
    let mut found: Option<Section> = None;
    let mut in_skipped_section = false;
    // Some secure section was dropped for want of a usable key (for the error).
    let mut unkeyed = false;

    for (idx, raw) in sdp.lines().enumerate() {
        let line_no = idx + 1;
        let line = raw.trim_end_matches('\r').trim();
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        let bad = |reason: &str| SdpError::BadLine {
            line: line_no,
            reason: reason.to_string(),
        };
        if kind == "m" {
            if found.as_ref().is_some_and(Section::usable) {
                break; // the audio section we want has ended
            }
            // An SAVP section without a key we can use is dropped for a later one.
            if found.take().is_some() {
                unkeyed = true;
            }
            match parse_m_line(value).map_err(|r| bad(&r))? {
                Some((port, payloads, secure)) => {
                    found = Some(Section::new(port, payloads, secure));
                    in_skipped_section = false;
                }
                None => in_skipped_section = true,
            }
            continue;
        }
        if in_skipped_section {
            continue;
        }
        match (kind, found.as_mut()) {
            ("c", None) => session_addr = Some(parse_c_line(value).map_err(|r| bad(&r))?),
            ("c", Some(s)) => s.addr = Some(parse_c_line(value).map_err(|r| bad(&r))?),
            ("a", section) => {
                let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                if let Some(dir) = Direction::from_attribute(name) {
                    match section {
                        Some(s) => s.direction = Some(dir),
                        None => session_dir = Some(dir),
                    }
                } else if let Some(s) = section {
                    match name {
                        "rtpmap" => s.rtpmap.push(parse_rtpmap(arg).map_err(|r| bad(&r))?),
                        // A bad ptime is not worth refusing a call over.
                        "ptime" => s.ptime = arg.trim().parse().ok(),
                        "crypto" if s.secure && s.crypto.is_none() => s.crypto = parse_crypto(arg),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    let s = match found {
        Some(s) if s.usable() => s,
        Some(_) => return Err(UNKEYED),
        None if unkeyed => return Err(UNKEYED),
        None => return Err(SdpError::NoAudio),
    };
    let addr = s.addr.or(session_addr).ok_or(SdpError::NoConnection)?;
    let mut offer = MediaOffer {
        addr,
        port: s.port,
        payloads: s.payloads,
        rtpmap: s.rtpmap,
        telephone_event: None,
        direction: s.direction.or(session_dir).unwrap_or_default(),
        ptime: s.ptime,
        crypto: s.crypto,
    };
    offer.telephone_event = offer.payloads.iter().copied().find(|&pt| {
        matches!(offer.rtpmap_of(pt),
                 Some((name, 8000)) if name.eq_ignore_ascii_case("telephone-event"))
    });
    Ok(offer)
}

/// Answers a remote offer: the caller's most preferred of PCMU/PCMA, plus
/// telephone-event if offered. `Err(NoCommonCodec)` means reply 488.
pub(crate) fn negotiate(offer: &MediaOffer) -> Result<Negotiated, SdpError> {
    let (payload_type, codec) = offer
        .payloads
        .iter()
        .find_map(|&pt| offer.codec_of(pt).map(|c| (pt, c)))
        .ok_or(SdpError::NoCommonCodec)?;
    Ok(Negotiated {
        codec,
        payload_type,
        remote: SocketAddr::new(offer.addr, offer.port),
        telephone_event: offer.telephone_event,
        direction: offer.effective_direction().answer_direction(),
        srtp: offer.crypto.map(|(tag, remote)| SrtpKeys {
            tag,
            local: SdesKey::generate(),
            remote,
        }),
    })
}

/// Reads the remote's answer to our plain [`offer`]: the first of PCMU/PCMA it lists.
pub(crate) fn negotiate_answer(answer: &MediaOffer) -> Result<Negotiated, SdpError> {
    negotiate_keyed_answer(answer, None)
}

/// Reads the remote's answer to our [`keyed_offer`]. `ours` is the key we offered
/// (None for a plain offer): a secure offer needs a secure answer and a plain one a
/// plain answer (RFC 4568 section 7.1.3).
pub(crate) fn negotiate_keyed_answer(
    answer: &MediaOffer,
    ours: Option<SdesKey>,
) -> Result<Negotiated, SdpError> {
    // The rules are the same as for an offer: take the first G.711 listed, keep its
    // payload type, and mirror the direction (a recvonly answer means we only send).
    let mut n = negotiate(answer)?;
    n.srtp = match (ours, answer.crypto) {
        (Some(local), Some((tag, remote))) => Some(SrtpKeys { tag, local, remote }),
        (None, None) => None,
        (Some(_), None) => return Err(SdpError::Srtp("plain answer to our secure offer")),
        (None, Some(_)) => return Err(SdpError::Srtp("secure answer to our plain offer")),
    };
    Ok(n)
}

const UNKEYED: SdpError =
    SdpError::Srtp("secure audio (RTP/SAVP) without an AES_CM_128_HMAC_SHA1_80 inline key");

/// Writes our SDP answer for a negotiated stream (RFC 3264 section 6.1).
pub(crate) fn answer(
    local_ip: IpAddr,
    local_port: u16,
    neg: &Negotiated,
    session_id: u64,
    version: u64,
) -> String {
    let codecs = [(neg.payload_type, neg.codec.name())];
    let srtp = neg.srtp.map(|k| (k.tag, k.local));
    body(
        local_ip,
        local_port,
        &codecs,
        neg.telephone_event,
        (neg.direction, srtp),
        session_id,
        version,
    )
}

/// Writes our SDP offer (INVITE without SDP, outbound calls): PCMU, PCMA,
/// telephone-event 101, sendrecv, ptime 20.
pub(crate) fn offer(local_ip: IpAddr, local_port: u16, session_id: u64, version: u64) -> String {
    keyed_offer(local_ip, local_port, session_id, version, None)
}

/// [`offer`], as RTP/SAVP with `srtp` as our key (tag 1) if given.
pub(crate) fn keyed_offer(
    local_ip: IpAddr,
    local_port: u16,
    session_id: u64,
    version: u64,
    srtp: Option<SdesKey>,
) -> String {
    let codecs = [
        (Codec::Pcmu.payload_type(), Codec::Pcmu.name()),
        (Codec::Pcma.payload_type(), Codec::Pcma.name()),
    ];
    body(
        local_ip,
        local_port,
        &codecs,
        Some(OFFER_TELEPHONE_EVENT_PT),
        (Direction::SendRecv, srtp.map(|k| (1, k))),
        session_id,
        version,
    )
}

fn body(
    ip: IpAddr,
    port: u16,
    codecs: &[(u8, &str)],
    telephone_event: Option<u8>,
    (direction, srtp): (Direction, Option<(u32, SdesKey)>),
    session_id: u64,
    version: u64,
) -> String {
    let family = match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let mut s = String::new();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = write!(
        s,
        "v=0\r\no=hotline {session_id} {version} IN {family} {ip}\r\ns=hotline\r\n\
         c=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} {}",
        if srtp.is_some() {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        }
    );
    for (pt, _) in codecs {
        let _ = write!(s, " {pt}");
    }
    if let Some(te) = telephone_event {
        let _ = write!(s, " {te}");
    }
    s.push_str("\r\n");
    for (pt, name) in codecs {
        let _ = write!(s, "a=rtpmap:{pt} {name}/8000\r\n");
    }
    if let Some(te) = telephone_event {
        let _ = write!(
            s,
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
        );
    }
    let _ = write!(s, "a=ptime:20\r\na={}\r\n", direction.attribute());
    if let Some((tag, key)) = srtp {
        let _ = write!(s, "a=crypto:{tag} {} {}\r\n", srtp::SUITE, key.key_params());
    }
    s
}

/// An audio section under construction while parsing.
struct Section {
    port: u16,
    payloads: Vec<u8>,
    addr: Option<IpAddr>,
    rtpmap: Vec<(u8, String, u32)>,
    direction: Option<Direction>,
    ptime: Option<u32>,
    /// RTP/SAVP: usable only with a key.
    secure: bool,
    crypto: Option<(u32, SdesKey)>,
}

impl Section {
    fn new(port: u16, payloads: Vec<u8>, secure: bool) -> Section {
        Section {
            port,
            payloads,
            addr: None,
            rtpmap: Vec::new(),
            direction: None,
            ptime: None,
            secure,
            crypto: None,
        }
    }

    fn usable(&self) -> bool {
        !self.secure || self.crypto.is_some()
    }
}

/// `1 AES_CM_128_HMAC_SHA1_80 inline:<key>` -> (tag, key); None for another suite,
/// a key we cannot use, or session parameters (RFC 4568 section 6.3) we do not
/// implement, such as UNENCRYPTED_SRTP.
fn parse_crypto(arg: &str) -> Option<(u32, SdesKey)> {
    let mut parts = arg.split_whitespace();
    let tag = parts.next()?.parse().ok()?;
    if parts.next()? != srtp::SUITE {
        return None;
    }
    let key = SdesKey::from_key_params(parts.next()?)?;
    parts.next().is_none().then_some((tag, key))
}

/// `audio 49170 RTP/AVP 0 8 101` -> Some((port, payloads, secure)); None for a
/// section to skip (not audio, port 0, or a profile we cannot speak such as UDP/TLS).
fn parse_m_line(value: &str) -> Result<Option<(u16, Vec<u8>, bool)>, String> {
    let mut parts = value.split_whitespace();
    if parts.next() != Some("audio") {
        return Ok(None);
    }
    let port = parts.next().ok_or("m= line without port")?;
    let proto = parts.next().ok_or("m= line without protocol")?;
    // `port/count` (RFC 4566 section 5.14): we use the first port only.
    let port_str = port.split('/').next().unwrap_or(port);
    let port: u16 = port_str
        .parse()
        .map_err(|_| format!("bad port {port_str:?}"))?;
    let secure = match proto {
        "RTP/AVP" | "RTP/AVPF" => false,
        "RTP/SAVP" | "RTP/SAVPF" => true,
        _ => return Ok(None),
    };
    if port == 0 {
        return Ok(None);
    }
    let payloads = parts
        .map(|f| {
            f.parse::<u8>()
                .map_err(|_| format!("bad payload type {f:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if payloads.is_empty() {
        return Err("m= line without payload types".into());
    }
    Ok(Some((port, payloads, secure)))
}

/// `IN IP4 192.0.2.1`, `IN IP6 2001:db8::1`, `IN IP4 224.2.1.1/127` -> address.
fn parse_c_line(value: &str) -> Result<IpAddr, String> {
    let mut parts = value.split_whitespace();
    let (net, family, addr) = match (parts.next(), parts.next(), parts.next()) {
        (Some(n), Some(f), Some(a)) => (n, f, a),
        _ => return Err("c= line needs three fields".into()),
    };
    if net != "IN" {
        return Err(format!("unknown network type {net:?}"));
    }
    let addr = addr.split('/').next().unwrap_or(addr);
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("bad address {addr:?} (host names are not supported)"))?;
    match (family, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(ip),
        _ => Err(format!("address {addr:?} does not match {family}")),
    }
}

/// `0 PCMU/8000` or `96 opus/48000/2` -> (pt, name, clock).
fn parse_rtpmap(arg: &str) -> Result<(u8, String, u32), String> {
    let (pt, rest) = arg
        .trim()
        .split_once(char::is_whitespace)
        .ok_or("rtpmap without encoding")?;
    let pt: u8 = pt.parse().map_err(|_| format!("bad payload type {pt:?}"))?;
    let mut enc = rest.trim().split('/');
    let name = enc.next().unwrap_or("").to_string();
    let clock: u32 = enc
        .next()
        .ok_or("rtpmap without clock rate")?
        .parse()
        .map_err(|_| "bad clock rate".to_string())?;
    if name.is_empty() {
        return Err("rtpmap without encoding name".into());
    }
    Ok((pt, name, clock))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const LINPHONE: &str = "v=0\r\n\
o=alice 2153 3842 IN IP4 192.168.1.23\r\n\
s=Talk\r\n\
c=IN IP4 192.168.1.23\r\n\
t=0 0\r\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
a=record:off\r\n\
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:97 speex/16000\r\n\
a=fmtp:97 vbr=on\r\n\
a=rtpmap:98 speex/8000\r\n\
a=fmtp:98 vbr=on\r\n\
a=fmtp:18 annexb=yes\r\n\
a=rtpmap:101 telephone-event/48000\r\n\
a=rtpmap:99 telephone-event/16000\r\n\
a=rtpmap:100 telephone-event/8000\r\n\
a=rtcp-fb:* trr-int 1000\r\n\
a=rtcp-fb:* ccm tmmbr\r\n\
m=video 9078 RTP/AVP 96\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=sendonly\r\n";

    const BARESIP: &str = "v=0\r\n\
o=- 1690458321 3129540711 IN IP4 10.0.0.5\r\n\
s=-\r\n\
c=IN IP4 10.0.0.5\r\n\
t=0 0\r\n\
m=audio 10196 RTP/AVP 9 0 8 101\r\n\
b=AS:96\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=ssrc:1546795330 cname:sip:bob@example.org\r\n\
a=rtcp-rsize\r\n";

    // SIPp's uac scenario body, with its bare \n line endings.
    const SIPP: &str = "v=0\n\
o=user1 53655765 2353687637 IN IP4 127.0.1.1\n\
s=-\n\
c=IN IP4 127.0.1.1\n\
t=0 0\n\
m=audio 6000 RTP/AVP 0\n\
a=rtpmap:0 PCMU/8000\n";

    const ASTERISK: &str = "v=0\r\n\
o=- 1234567890 1234567890 IN IP4 203.0.113.10\r\n\
s=Asterisk\r\n\
c=IN IP4 203.0.113.10\r\n\
t=0 0\r\n\
m=audio 17234 RTP/AVP 8 0 3 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:3 GSM/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n";

    fn ip4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn linphone_offer_picks_pcmu_and_8k_telephone_event_and_ignores_video() {
        let o = parse(LINPHONE).unwrap();
        assert_eq!(o.addr, ip4(192, 168, 1, 23));
        assert_eq!(o.port, 7078);
        assert_eq!(o.payloads, vec![96, 97, 98, 0, 8, 18, 101, 99, 100]);
        assert_eq!(o.telephone_event, Some(100), "only the 8000 Hz one");
        assert_eq!(
            o.direction,
            Direction::SendRecv,
            "video's sendonly not ours"
        );
        let n = negotiate(&o).unwrap();
        assert_eq!((n.codec, n.payload_type), (Codec::Pcmu, 0));
        assert_eq!(n.remote, "192.168.1.23:7078".parse().unwrap());
        assert_eq!(n.telephone_event, Some(100));
        assert_eq!(n.direction, Direction::SendRecv);
    }

    #[test]
    fn baresip_g722_first_is_answered_with_pcmu() {
        let o = parse(BARESIP).unwrap();
        let n = negotiate(&o).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.remote, "10.0.0.5:10196".parse().unwrap());
    }

    #[test]
    fn sipp_bare_newlines_pcmu_only_without_telephone_event() {
        let o = parse(SIPP).unwrap();
        assert_eq!(o.addr, ip4(127, 0, 1, 1));
        assert_eq!(o.telephone_event, None);
        let n = negotiate(&o).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.telephone_event, None);
        let a = answer(ip4(127, 0, 0, 1), 20000, &n, 1, 1);
        assert!(!a.contains("telephone-event"));
        assert!(a.contains("m=audio 20000 RTP/AVP 0\r\n"));
    }

    #[test]
    fn asterisk_pcma_preferred_is_answered_with_pcma() {
        let o = parse(ASTERISK).unwrap();
        assert_eq!(o.ptime, Some(20));
        let n = negotiate(&o).unwrap();
        assert_eq!((n.codec, n.payload_type), (Codec::Pcma, 8));
        let a = answer(ip4(198, 51, 100, 7), 20002, &n, 42, 1);
        assert!(a.contains("m=audio 20002 RTP/AVP 8 101\r\n"), "{a}");
        assert!(a.contains("a=rtpmap:8 PCMA/8000\r\n"));
        assert!(a.contains("a=fmtp:101 0-16\r\n"));
        assert!(a.contains("o=hotline 42 1 IN IP4 198.51.100.7\r\n"));
        assert!(a.contains("a=sendrecv\r\n"));
    }

    #[test]
    fn g729_only_is_no_common_codec() {
        let sdp = "v=0\r\nc=IN IP4 10.1.1.1\r\nm=audio 4000 RTP/AVP 18 101\r\n\
                   a=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
        let o = parse(sdp).unwrap();
        assert_eq!(negotiate(&o), Err(SdpError::NoCommonCodec));
    }

    #[test]
    fn dynamic_rtpmap_names_are_matched_case_insensitively() {
        let sdp = "v=0\nc=IN IP4 10.1.1.1\nm=audio 4000 RTP/AVP 112 113 114\n\
                   a=rtpmap:112 pcmu/16000\na=rtpmap:113 pcma/8000\n\
                   a=rtpmap:114 Telephone-Event/8000\n";
        let n = negotiate(&parse(sdp).unwrap()).unwrap();
        assert_eq!(
            (n.codec, n.payload_type),
            (Codec::Pcma, 113),
            "PCMU at 16k is no G.711"
        );
        assert_eq!(n.telephone_event, Some(114));
        let a = answer(ip4(10, 0, 0, 1), 20000, &n, 1, 1);
        assert!(a.contains("m=audio 20000 RTP/AVP 113 114\r\n"), "{a}");
        assert!(a.contains("a=rtpmap:113 PCMA/8000\r\n"));
    }

    #[test]
    fn static_pt_redefined_by_rtpmap_is_not_g711() {
        let sdp = "v=0\nc=IN IP4 10.1.1.1\nm=audio 4000 RTP/AVP 0 8\na=rtpmap:0 opus/48000\n";
        let n = negotiate(&parse(sdp).unwrap()).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
    }

    #[test]
    fn direction_mapping_follows_rfc3264() {
        use Direction::*;
        assert_eq!(SendRecv.answer_direction(), SendRecv);
        assert_eq!(SendOnly.answer_direction(), RecvOnly);
        assert_eq!(RecvOnly.answer_direction(), SendOnly);
        assert_eq!(Inactive.answer_direction(), Inactive);
        for d in [SendRecv, SendOnly, RecvOnly, Inactive] {
            let sdp = format!(
                "v=0\nc=IN IP4 10.1.1.1\nm=audio 4000 RTP/AVP 0\na={}\n",
                d.attribute()
            );
            let n = negotiate(&parse(&sdp).unwrap()).unwrap();
            assert_eq!(n.direction, d.answer_direction());
            let a = answer(ip4(10, 0, 0, 1), 20000, &n, 1, 2);
            assert_eq!(parse(&a).unwrap().direction, d.answer_direction());
        }
    }

    #[test]
    fn session_level_direction_applies_unless_media_overrides() {
        let s = "v=0\nc=IN IP4 10.1.1.1\na=recvonly\nm=audio 4000 RTP/AVP 0\n";
        assert_eq!(parse(s).unwrap().direction, Direction::RecvOnly);
        let s = "v=0\nc=IN IP4 10.1.1.1\na=recvonly\nm=audio 4000 RTP/AVP 0\na=inactive\n";
        assert_eq!(parse(s).unwrap().direction, Direction::Inactive);
    }

    #[test]
    fn hold_offers_are_reported_not_refused() {
        // RFC 3264 section 8.4 (a=sendonly) and the older RFC 2543 c=0.0.0.0 style.
        let s = "v=0\r\nc=IN IP4 10.1.1.1\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n";
        let o = parse(s).unwrap();
        assert!(o.is_hold());
        assert_eq!(negotiate(&o).unwrap().direction, Direction::RecvOnly);

        let s = "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 8\r\n";
        let o = parse(s).unwrap();
        assert!(o.is_hold());
        let n = negotiate(&o).unwrap();
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(n.remote.ip().is_unspecified());

        let s = "v=0\r\nc=IN IP4 10.1.1.1\r\nm=audio 4000 RTP/AVP 0\r\na=inactive\r\n";
        let o = parse(s).unwrap();
        assert!(o.is_hold());
        assert_eq!(negotiate(&o).unwrap().direction, Direction::Inactive);

        assert!(!parse(SIPP).unwrap().is_hold());
    }

    #[test]
    fn ipv6_connection_and_media_level_override() {
        let s = "v=0\nc=IN IP4 10.1.1.1\nm=audio 4000 RTP/AVP 0\nc=IN IP6 2001:db8::5\n";
        let o = parse(s).unwrap();
        assert_eq!(o.addr, "2001:db8::5".parse::<IpAddr>().unwrap());
        let n = negotiate(&o).unwrap();
        assert_eq!(n.remote, "[2001:db8::5]:4000".parse().unwrap());
        let a = answer(IpAddr::V6(Ipv6Addr::LOCALHOST), 20000, &n, 7, 7);
        assert!(a.contains("c=IN IP6 ::1\r\n"));
        assert_eq!(parse(&a).unwrap().addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn port_zero_and_srtp_streams_are_skipped() {
        let s = "v=0\nc=IN IP4 10.1.1.1\nm=audio 0 RTP/AVP 0\nm=audio 5000 RTP/SAVP 0\n\
                 a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:xxx\nm=audio 6000/2 RTP/AVP 8\n";
        let o = parse(s).unwrap();
        assert_eq!((o.port, o.payloads.clone()), (6000, vec![8]));
        let s = "v=0\nc=IN IP4 10.1.1.1\nm=audio 0 RTP/AVP 0\n";
        assert_eq!(parse(s), Err(SdpError::NoAudio));
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert_eq!(parse(""), Err(SdpError::NoAudio));
        assert_eq!(parse("hello world"), Err(SdpError::NoAudio));
        assert_eq!(
            parse("v=0\nm=audio 4000 RTP/AVP 0\n"),
            Err(SdpError::NoConnection)
        );
        assert!(matches!(
            parse("v=0\nc=IN IP4 10.1.1.1\nm=audio 99999 RTP/AVP 0\n"),
            Err(SdpError::BadLine { line: 3, .. })
        ));
        assert!(matches!(
            parse("v=0\nc=IN IP4 example.org\nm=audio 4000 RTP/AVP 0\n"),
            Err(SdpError::BadLine { line: 2, .. })
        ));
        assert!(matches!(
            parse("v=0\nc=IN IP6 10.1.1.1\nm=audio 4000 RTP/AVP 0\n"),
            Err(SdpError::BadLine { .. })
        ));
        assert!(matches!(
            parse("v=0\nc=IN IP4 10.1.1.1\nm=audio 4000 RTP/AVP 0 x\n"),
            Err(SdpError::BadLine { .. })
        ));
    }

    #[test]
    fn our_offer_reparses_and_negotiates_as_its_own_answer() {
        let s = offer(ip4(192, 0, 2, 1), 20004, 99, 3);
        assert!(s.starts_with("v=0\r\no=hotline 99 3 IN IP4 192.0.2.1\r\n"));
        let o = parse(&s).unwrap();
        assert_eq!(o.addr, ip4(192, 0, 2, 1));
        assert_eq!(o.port, 20004);
        assert_eq!(o.payloads, vec![0, 8, 101]);
        assert_eq!(o.telephone_event, Some(101));
        assert_eq!(o.direction, Direction::SendRecv);
        assert_eq!(o.ptime, Some(20));
        let n = negotiate_answer(&o).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
    }

    #[test]
    fn remote_answer_to_our_offer() {
        // A phone that answers with PCMA only and recvonly: we send, we do not receive.
        let s = "v=0\r\nc=IN IP4 10.2.2.2\r\nm=audio 30000 RTP/AVP 8 101\r\n\
                 a=rtpmap:101 telephone-event/8000\r\na=recvonly\r\n";
        let n = negotiate_answer(&parse(s).unwrap()).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.direction, Direction::SendOnly);
    }

    const KEY: &str = "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    fn savp(crypto: &str) -> String {
        format!(
            "v=0\r\nc=IN IP4 10.3.3.3\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0 101\r\n\
             a=rtpmap:101 telephone-event/8000\r\n{crypto}"
        )
    }

    #[test]
    fn savp_offer_is_answered_savp_with_a_key_of_our_own() {
        let s = savp(&format!(
            "a=crypto:2 AES_256_CM_HMAC_SHA1_80 inline:xyz\r\n\
             a=crypto:5 AES_CM_128_HMAC_SHA1_80 {KEY}|2^20\r\n"
        ));
        let o = parse(&s).unwrap();
        let (tag, theirs) = o.crypto.unwrap();
        assert_eq!(tag, 5, "the first line with our suite");
        let n = negotiate(&o).unwrap();
        let keys = n.srtp.unwrap();
        assert_eq!((keys.tag, keys.remote), (5, theirs));
        assert_ne!(keys.local, theirs);
        let a = answer(ip4(192, 0, 2, 9), 20000, &n, 1, 1);
        assert!(a.contains("m=audio 20000 RTP/SAVP 0 101\r\n"), "{a}");
        let line = format!(
            "a=crypto:5 AES_CM_128_HMAC_SHA1_80 {}\r\n",
            keys.local.key_params()
        );
        assert!(a.contains(&line), "{a}");
        // Our answer read back by the offerer gives its key back as the remote one.
        let back = parse(&a).unwrap();
        assert_eq!(back.crypto, Some((5, keys.local)));
    }

    #[test]
    fn savp_offers_without_a_usable_key_are_srtp_errors() {
        for crypto in [
            "",
            "a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=\r\n",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\r\n",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz UNENCRYPTED_SRTP\r\n",
            "a=crypto:x AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n",
        ] {
            assert!(matches!(parse(&savp(crypto)), Err(SdpError::Srtp(_))), "{crypto:?}");
        }
        // A crypto line in a plain stream means nothing.
        let s = format!("v=0\nc=IN IP4 10.1.1.1\nm=audio 5000 RTP/AVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY}\n");
        assert_eq!(parse(&s).unwrap().crypto, None);
        assert_eq!(negotiate(&parse(&s).unwrap()).unwrap().srtp, None);
    }

    #[test]
    fn keyed_offer_needs_a_keyed_answer_and_a_plain_one_a_plain_answer() {
        let ours = SdesKey::generate();
        let o = keyed_offer(ip4(192, 0, 2, 1), 20002, 1, 1, Some(ours));
        assert!(o.contains("m=audio 20002 RTP/SAVP 0 8 101\r\n"), "{o}");
        assert!(o.contains(&format!(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 {}\r\n",
            ours.key_params()
        )));
        let secure = parse(&savp(&format!(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY}\r\n"
        )))
        .unwrap();
        let plain = parse(SIPP).unwrap();
        let n = negotiate_keyed_answer(&secure, Some(ours)).unwrap();
        let keys = n.srtp.unwrap();
        assert_eq!((keys.local, Some((1, keys.remote))), (ours, secure.crypto));
        assert!(matches!(
            negotiate_keyed_answer(&plain, Some(ours)),
            Err(SdpError::Srtp(_))
        ));
        assert!(matches!(
            negotiate_keyed_answer(&secure, None),
            Err(SdpError::Srtp(_))
        ));
        assert!(negotiate_answer(&plain).unwrap().srtp.is_none());
        assert!(!offer(ip4(192, 0, 2, 1), 20002, 1, 1).contains("SAVP"));
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_garbage(s in "\\PC*") {
            let _ = parse(&s);
        }

        #[test]
        fn parse_never_panics_on_sdp_like_lines(
            lines in proptest::collection::vec(
                "(v|o|c|m|a|t)=(IN IP[46] [0-9a-f.:/]{0,20}|audio [0-9/]{0,7} RTP/AVPF? [0-9 ]{0,12}|rtpmap:[0-9]{0,4} ?[A-Za-z-]{0,8}/?[0-9]{0,6}|sendonly|ptime:[0-9a-z]{0,4}|.{0,10})",
                0..12,
            )
        ) {
            let body = lines.join("\r\n");
            if let Ok(o) = parse(&body) {
                let _ = negotiate(&o);
            }
        }
    }
}
