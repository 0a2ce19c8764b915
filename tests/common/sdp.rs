//! Just enough SDP (RFC 4566, offer/answer RFC 3264) for one audio stream.

use std::net::{IpAddr, SocketAddr};

use super::error::{PhoneError, Result};

/// Encoding name of a payload type in our offers; dynamic types (96-127) are telephone-event.
pub fn codec_name(pt: u8) -> &'static str {
    match pt {
        0 => "PCMU",
        3 => "GSM",
        8 => "PCMA",
        9 => "G722",
        18 => "G729",
        96..=127 => "telephone-event",
        _ => "unknown",
    }
}

/// An SDP body for one audio stream at `rtp` offering `pts` in order, with `direction`
/// (`sendrecv`, `sendonly`, ...). `version` goes in the o= line and must grow on re-offers.
pub fn build_sdp(rtp: SocketAddr, pts: &[u8], direction: &str, version: u32) -> String {
    let ip = rtp.ip();
    let list: Vec<String> = pts.iter().map(|p| p.to_string()).collect();
    let mut s = format!(
        "v=0\r\no=tester 4711 {version} IN IP4 {ip}\r\ns=hotline test phone\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP {}\r\n",
        rtp.port(),
        list.join(" ")
    );
    for pt in pts {
        let name = codec_name(*pt);
        s.push_str(&format!("a=rtpmap:{pt} {name}/8000\r\n"));
        if name == "telephone-event" {
            s.push_str(&format!("a=fmtp:{pt} 0-16\r\n"));
        }
        if *pt == 18 {
            s.push_str("a=fmtp:18 annexb=no\r\n");
        }
    }
    s.push_str(&format!("a=ptime:20\r\na={direction}\r\n"));
    s
}

/// What the phone needs from the peer's SDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSdp {
    /// Where to send RTP; `None` when the stream is rejected (port 0) or has no address.
    pub rtp_addr: Option<SocketAddr>,
    /// Payload types of the m=audio line in order; in an answer the first is the chosen codec.
    pub payload_types: Vec<u8>,
    pub telephone_event_pt: Option<u8>,
    /// `sendrecv` unless an a=sendonly/recvonly/inactive line says otherwise.
    pub direction: String,
    pub raw: String,
}

impl RemoteSdp {
    /// The first G.711 payload type listed (0 or 8).
    pub fn audio_pt(&self) -> Option<u8> {
        self.payload_types
            .iter()
            .copied()
            .find(|p| *p == 0 || *p == 8)
    }
}

pub fn parse_sdp(text: &str) -> Result<RemoteSdp> {
    let mut session_ip: Option<IpAddr> = None;
    let mut media_ip: Option<IpAddr> = None;
    let mut port: Option<u16> = None;
    let mut pts = Vec::new();
    let mut te = None;
    let mut direction = "sendrecv".to_string();
    let mut in_audio = false;
    for line in text.lines().map(str::trim) {
        if let Some(c) = line.strip_prefix("c=") {
            let ip = c
                .split_whitespace()
                .nth(2)
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse().ok());
            if in_audio {
                media_ip = ip;
            } else {
                session_ip = ip;
            }
        } else if let Some(m) = line.strip_prefix("m=") {
            let mut f = m.split_whitespace();
            in_audio = f.next() == Some("audio") && port.is_none();
            if in_audio {
                port = f.next().and_then(|p| p.parse().ok());
                pts = f.skip(1).filter_map(|p| p.parse().ok()).collect();
            }
        } else if let Some(a) = line.strip_prefix("a=rtpmap:") {
            let (pt, enc) = a.split_once(' ').unwrap_or((a, ""));
            if enc.to_ascii_lowercase().starts_with("telephone-event") {
                te = pt.parse().ok();
            }
        } else if let Some(a) = line.strip_prefix("a=") {
            if matches!(a, "sendrecv" | "sendonly" | "recvonly" | "inactive") {
                direction = a.to_string();
            }
        }
    }
    let port = port.ok_or_else(|| PhoneError::Parse("SDP without m=audio".into()))?;
    let ip = media_ip.or(session_ip);
    Ok(RemoteSdp {
        rtp_addr: ip.filter(|_| port != 0).map(|ip| SocketAddr::new(ip, port)),
        payload_types: pts,
        telephone_event_pt: te,
        direction,
        raw: text.to_string(),
    })
}
