//! SRTP for the test phones (RFC 3711 keyed by SDES, RFC 4568): AES_CM_128_HMAC_SHA1_80
//! with one inline key each way. The SDP side is written here from the RFC, not taken
//! from the daemon; the cipher is webrtc-srtp's (checked against libsrtp's reference
//! vector in the daemon's unit tests).

use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

use super::media::lock;

pub const SUITE: &str = "AES_CM_128_HMAC_SHA1_80";

/// A fresh 16-byte master key and 14-byte salt.
pub fn new_key() -> [u8; 30] {
    let mut k = [0u8; 30];
    for b in k.iter_mut() {
        *b = rand::random();
    }
    k
}

/// `a=crypto:<tag> AES_CM_128_HMAC_SHA1_80 inline:<base64>`.
pub fn crypto_line(tag: u32, key: &[u8; 30]) -> String {
    format!("a=crypto:{tag} {SUITE} inline:{}", STANDARD.encode(key))
}

/// A plain SDP body made secure: RTP/SAVP and our key after the audio attributes.
pub fn secure_sdp(plain: &str, key: &[u8; 30]) -> String {
    let mut s = plain.replacen(" RTP/AVP ", " RTP/SAVP ", 1);
    s.push_str(&crypto_line(1, key));
    s.push_str("\r\n");
    s
}

/// The peer's key from the first `a=crypto` line with our suite, if it is usable.
pub fn remote_key(sdp: &str) -> Option<[u8; 30]> {
    sdp.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("a=crypto:")?;
        let mut f = rest.split_whitespace();
        let _tag = f.next()?;
        if f.next()? != SUITE {
            return None;
        }
        let inline = f.next()?.strip_prefix("inline:")?;
        let b64 = inline.split('|').next()?;
        STANDARD.decode(b64).ok()?.try_into().ok()
    })
}

/// Whether an SDP body's audio stream is RTP/SAVP.
pub fn is_secure(sdp: &str) -> bool {
    sdp.lines()
        .any(|l| l.starts_with("m=audio") && l.contains(" RTP/SAVP"))
}

/// One leg's two SRTP contexts.
pub struct PhoneSrtp {
    tx: Mutex<Context>,
    rx: Mutex<Context>,
}

fn context(key: &[u8; 30]) -> Context {
    Context::new(
        &key[..16],
        &key[16..],
        ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
    )
    .expect("SRTP context from a 30-byte key")
}

impl PhoneSrtp {
    pub fn new(local: &[u8; 30], remote: &[u8; 30]) -> PhoneSrtp {
        PhoneSrtp {
            tx: Mutex::new(context(local)),
            rx: Mutex::new(context(remote)),
        }
    }

    pub fn protect(&self, rtp: &[u8]) -> Vec<u8> {
        lock(&self.tx)
            .encrypt_rtp(rtp)
            .map(|b| b.to_vec())
            .unwrap_or_default()
    }

    /// None for a packet that does not authenticate (plain RTP, wrong key, replay).
    pub fn unprotect(&self, srtp: &[u8]) -> Option<Vec<u8>> {
        lock(&self.rx).decrypt_rtp(srtp).ok().map(|b| b.to_vec())
    }
}
