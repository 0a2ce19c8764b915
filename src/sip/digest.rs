//! Fixes for rsipstack's digest authentication on the wire.
//!
//! rsipstack 0.7.14 computes SHA-256 digests correctly, but only knows the algorithm
//! by the token `SHA256`: a trunk that challenges with RFC 8760's `algorithm=SHA-256`
//! fails to parse, and our answer would say `SHA256`, which a strict server rejects.
//! This inspector renames the token on the way in (so rsipstack understands the
//! challenge) and back on the way out (so the trunk understands the answer). The
//! digest itself is unchanged: it hashes the same bytes either way.

use rsipstack::sip::{Header, SipMessage};
use rsipstack::transaction::endpoint::MessageInspector;
use rsipstack::transport::SipAddr;

/// The inspector installed on the endpoint.
pub(crate) struct DigestAlgorithmFix;

/// Replace an `algorithm=` value in a header, whether quoted or not, case-insensitively.
fn rename_algorithm(value: &str, from: &str, to: &str) -> Option<String> {
    let lower = value.to_ascii_lowercase();
    let key = "algorithm=";
    let at = lower.find(key)? + key.len();
    let rest = &value[at..];
    let (quote, body) = match rest.strip_prefix('"') {
        Some(b) => ("\"", b),
        None => ("", rest),
    };
    let end = body
        .find(|c: char| c == '"' || c == ',' || c.is_whitespace())
        .unwrap_or(body.len());
    let token = &body[..end];
    let renamed = if token.eq_ignore_ascii_case(from) {
        to.to_string()
    } else if token.len() > from.len()
        && token[..from.len()].eq_ignore_ascii_case(from)
        && token[from.len()..].eq_ignore_ascii_case("-sess")
    {
        format!("{to}-sess")
    } else {
        return None;
    };
    Some(format!(
        "{}{}{}{}",
        &value[..at],
        quote,
        renamed,
        &body[end..]
    ))
}

fn fix_headers(msg: &mut SipMessage, incoming: bool) {
    let headers = match msg {
        SipMessage::Request(r) => &mut r.headers,
        SipMessage::Response(r) => &mut r.headers,
    };
    for h in headers.iter_mut() {
        let replaced = match h {
            Header::WwwAuthenticate(v) if incoming => {
                rename_algorithm(&v.to_string(), "SHA-256", "SHA256")
                    .map(|s| Header::WwwAuthenticate(strip_name(&s, "WWW-Authenticate").into()))
            }
            Header::ProxyAuthenticate(v) if incoming => {
                rename_algorithm(&v.to_string(), "SHA-256", "SHA256")
                    .map(|s| Header::ProxyAuthenticate(strip_name(&s, "Proxy-Authenticate").into()))
            }
            Header::Authorization(v) if !incoming => {
                rename_algorithm(&v.to_string(), "SHA256", "SHA-256")
                    .map(|s| Header::Authorization(strip_name(&s, "Authorization").into()))
            }
            Header::ProxyAuthorization(v) if !incoming => {
                rename_algorithm(&v.to_string(), "SHA256", "SHA-256").map(|s| {
                    Header::ProxyAuthorization(strip_name(&s, "Proxy-Authorization").into())
                })
            }
            _ => None,
        };
        if let Some(new) = replaced {
            *h = new;
        }
    }
}

/// Untyped headers print as "Name: value"; keep only the value.
fn strip_name(s: &str, name: &str) -> String {
    s.strip_prefix(name)
        .and_then(|r| r.strip_prefix(':'))
        .map(|r| r.trim_start().to_string())
        .unwrap_or_else(|| s.to_string())
}

impl MessageInspector for DigestAlgorithmFix {
    fn before_send(&self, mut msg: SipMessage, _dest: Option<&SipAddr>) -> SipMessage {
        fix_headers(&mut msg, false);
        msg
    }

    fn after_received(&self, mut msg: SipMessage, _from: Option<&SipAddr>) -> SipMessage {
        fix_headers(&mut msg, true);
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsipstack::sip::prelude::ToTypedHeader;

    #[test]
    fn renames_quoted_and_bare_tokens_only_in_the_algorithm_parameter() {
        let v = r#"Digest realm="trunk", nonce="abc", algorithm=SHA-256, qop="auth""#;
        assert_eq!(
            rename_algorithm(v, "SHA-256", "SHA256").as_deref(),
            Some(r#"Digest realm="trunk", nonce="abc", algorithm=SHA256, qop="auth""#)
        );
        let q = r#"Digest realm="t", algorithm="sha-256-sess", nonce="x""#;
        assert_eq!(
            rename_algorithm(q, "SHA-256", "SHA256").as_deref(),
            Some(r#"Digest realm="t", algorithm="SHA256-sess", nonce="x""#)
        );
        assert_eq!(
            rename_algorithm(r#"Digest algorithm=MD5"#, "SHA-256", "SHA256"),
            None
        );
        assert_eq!(
            rename_algorithm(r#"Digest realm="x""#, "SHA-256", "SHA256"),
            None
        );
    }

    #[test]
    fn an_rfc8760_challenge_becomes_one_rsipstack_can_parse() {
        let raw = "SIP/2.0 407 Proxy Authentication Required\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc\r\n\
From: <sip:6289110@127.0.0.1>;tag=1\r\nTo: <sip:13800138000@127.0.0.1>;tag=2\r\n\
Call-ID: c1\r\nCSeq: 1 INVITE\r\n\
Proxy-Authenticate: Digest realm=\"trunk\", nonce=\"n1\", algorithm=SHA-256, qop=\"auth\"\r\n\
Content-Length: 0\r\n\r\n";
        let msg = SipMessage::try_from(raw).unwrap();
        let fixed = DigestAlgorithmFix.after_received(msg, None);
        let SipMessage::Response(resp) = fixed else {
            panic!("not a response")
        };
        let challenge = resp
            .headers
            .iter()
            .find_map(|h| match h {
                Header::ProxyAuthenticate(p) => Some(p.clone()),
                _ => None,
            })
            .unwrap();
        assert!(
            challenge.value().contains("algorithm=SHA256"),
            "{}",
            challenge.value()
        );
        // rsipstack's typed header now parses, which it did not before.
        let typed = challenge
            .typed()
            .expect("rsipstack parses the fixed challenge");
        assert_eq!(
            typed.algorithm,
            Some(rsipstack::sip::headers::auth::Algorithm::Sha256)
        );
    }

    #[test]
    fn our_answer_names_the_algorithm_as_rfc8760_does() {
        let raw = "INVITE sip:13800138000@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc\r\n\
From: <sip:6289110@127.0.0.1>;tag=1\r\nTo: <sip:13800138000@127.0.0.1>\r\n\
Call-ID: c1\r\nCSeq: 2 INVITE\r\n\
Proxy-Authorization: Digest username=\"u\", realm=\"trunk\", nonce=\"n1\", uri=\"sip:13800138000@127.0.0.1\", response=\"00\", algorithm=SHA256, qop=auth, nc=00000001, cnonce=\"c\"\r\n\
Content-Length: 0\r\n\r\n";
        let msg = SipMessage::try_from(raw).unwrap();
        let out = DigestAlgorithmFix.before_send(msg, None).to_string();
        assert!(out.contains("algorithm=SHA-256,"), "{out}");
        assert!(!out.contains("algorithm=SHA256"), "{out}");
    }
}
