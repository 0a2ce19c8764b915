//! SRTP for one leg (RFC 3711), keyed by SDES (RFC 4568): AES_CM_128_HMAC_SHA1_80 only.
//!
//! The crypto is webrtc-srtp's (pure Rust, maintained by webrtc-rs); this file only
//! turns SDP's `inline:` keys into its contexts and back. A leg has two keys: ours,
//! which protects what we send and which we announce in our SDP, and the peer's,
//! from its SDP, which unprotects what arrives (RFC 4568 section 6.1).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use webrtc_srtp::context::Context;
use webrtc_srtp::option::srtp_replay_protection;
use webrtc_srtp::protection_profile::ProtectionProfile;

/// The only crypto suite we speak (RFC 4568 section 6.2.1), as written in `a=crypto`.
pub(crate) const SUITE: &str = "AES_CM_128_HMAC_SHA1_80";

const KEY_LEN: usize = 16;
const SALT_LEN: usize = 14;
const REPLAY_WINDOW: usize = 64;

/// An SDES master key and salt: the 30 bytes of `inline:<base64>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct SdesKey {
    material: [u8; KEY_LEN + SALT_LEN],
}

impl std::fmt::Debug for SdesKey {
    // Keys never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SdesKey(..)")
    }
}

impl SdesKey {
    /// A fresh random key and salt for a leg we answer or offer (from the OS's
    /// cryptographic generator through `rand`'s thread RNG, which is a CSPRNG).
    pub(crate) fn generate() -> SdesKey {
        SdesKey {
            material: rand::random(),
        }
    }

    /// From the key parameter of an `a=crypto` line: `inline:<base64>` with an
    /// optional `|lifetime` and `|MKI:length` (RFC 4568 section 6.1). None for a key
    /// that is not 30 bytes, or that uses an MKI (we send none and accept none).
    pub(crate) fn from_key_params(params: &str) -> Option<SdesKey> {
        // Several keys are joined with ';' (RFC 4568 section 9.2); we take the first.
        let first = params.split(';').next()?;
        let inline = first.strip_prefix("inline:")?;
        let mut parts = inline.split('|');
        let key = STANDARD.decode(parts.next()?.trim()).ok()?;
        // A lifetime is fine (we re-key long before 2^31 packets); an MKI is not.
        if parts.any(|p| p.contains(':')) {
            return None;
        }
        Some(SdesKey {
            material: key.try_into().ok()?,
        })
    }

    /// `inline:<base64>` for our `a=crypto` line.
    pub(crate) fn key_params(&self) -> String {
        format!("inline:{}", STANDARD.encode(self.material))
    }

    /// A context for one direction. Replay protection (RFC 3711 section 3.3.2,
    /// 64-packet window, as libsrtp's default) matters only for unprotecting.
    fn context(&self) -> Result<Context, webrtc_srtp::Error> {
        let (key, salt) = self.material.split_at(KEY_LEN);
        Context::new(
            key,
            salt,
            ProtectionProfile::Aes128CmHmacSha1_80,
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            None,
        )
    }
}

/// Both keys of a leg, as negotiated in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SrtpKeys {
    /// The `a=crypto` tag of the line we accepted or offered (RFC 4568 section 9.1).
    pub tag: u32,
    /// Ours: protects what we send.
    pub local: SdesKey,
    /// The peer's: unprotects what we receive.
    pub remote: SdesKey,
}

/// Why a packet was not protected or unprotected.
#[derive(Debug, thiserror::Error)]
#[error("SRTP: {0}")]
pub(crate) struct SrtpError(#[from] webrtc_srtp::Error);

/// The two SRTP contexts of one leg (a context works one way only).
pub(crate) struct SrtpSession {
    keys: SrtpKeys,
    protect: Context,
    unprotect: Context,
}

impl SrtpSession {
    pub(crate) fn new(keys: SrtpKeys) -> Result<SrtpSession, SrtpError> {
        Ok(SrtpSession {
            keys,
            protect: keys.local.context()?,
            unprotect: keys.remote.context()?,
        })
    }

    /// The keys this session was made from (a re-INVITE may bring new ones).
    pub(crate) fn keys(&self) -> SrtpKeys {
        self.keys
    }

    /// An RTP packet to send, encrypted and with its authentication tag.
    pub(crate) fn protect_rtp(&mut self, rtp: &[u8]) -> Result<bytes::Bytes, SrtpError> {
        Ok(self.protect.encrypt_rtp(rtp)?)
    }

    /// An RTCP compound packet to send as SRTCP (RFC 3711 section 3.4).
    pub(crate) fn protect_rtcp(&mut self, rtcp: &[u8]) -> Result<bytes::Bytes, SrtpError> {
        Ok(self.protect.encrypt_rtcp(rtcp)?)
    }

    /// A received SRTCP packet, checked and decrypted.
    pub(crate) fn unprotect_rtcp(&mut self, srtcp: &[u8]) -> Result<bytes::Bytes, SrtpError> {
        Ok(self.unprotect.decrypt_rtcp(srtcp)?)
    }

    /// A received SRTP packet, checked and decrypted; Err for a forgery, a replay or
    /// a packet under another key (dropped by the caller).
    pub(crate) fn unprotect_rtp(&mut self, srtp: &[u8]) -> Result<bytes::Bytes, SrtpError> {
        Ok(self.unprotect.decrypt_rtp(srtp)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libsrtp's reference vector for AES_CM_128_HMAC_SHA1_80 (srtp_driver.c, the
    /// RFC 3711 default policy): key e1f97a0d..., SSRC cafebabe, seq 0x1234.
    const VECTOR_KEY: [u8; 30] = [
        0xe1, 0xf9, 0x7a, 0x0d, 0x3e, 0x01, 0x8b, 0xe0, 0xd6, 0x4f, 0xa3, 0x2c, 0x06, 0xde, 0x41,
        0x39, 0x0e, 0xc6, 0x75, 0xad, 0x49, 0x8a, 0xfe, 0xeb, 0xb6, 0x96, 0x0b, 0x3a, 0xab, 0xe6,
    ];
    const PLAIN: [u8; 28] = [
        0x80, 0x0f, 0x12, 0x34, 0xde, 0xca, 0xfb, 0xad, 0xca, 0xfe, 0xba, 0xbe, 0xab, 0xab, 0xab,
        0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab,
    ];
    const CIPHER: [u8; 38] = [
        0x80, 0x0f, 0x12, 0x34, 0xde, 0xca, 0xfb, 0xad, 0xca, 0xfe, 0xba, 0xbe, 0x4e, 0x55, 0xdc,
        0x4c, 0xe7, 0x99, 0x78, 0xd8, 0x8c, 0xa4, 0xd2, 0x15, 0x94, 0x9d, 0x24, 0x02, 0xb7, 0x8d,
        0x6a, 0xcc, 0x99, 0xea, 0x17, 0x9b, 0x8d, 0xbb,
    ];

    fn vector_key() -> SdesKey {
        SdesKey {
            material: VECTOR_KEY,
        }
    }

    #[test]
    fn reference_vector_protects_and_unprotects() {
        let key = vector_key();
        let keys = SrtpKeys {
            tag: 1,
            local: key,
            remote: key,
        };
        let mut s = SrtpSession::new(keys).unwrap();
        assert_eq!(&s.protect_rtp(&PLAIN).unwrap()[..], &CIPHER[..]);
        assert_eq!(&s.unprotect_rtp(&CIPHER).unwrap()[..], &PLAIN[..]);
        // The same packet again is a replay (RFC 3711 section 3.3.2).
        assert!(s.unprotect_rtp(&CIPHER).is_err());
    }

    #[test]
    fn tampered_or_wrongly_keyed_packets_are_refused() {
        let keys = SrtpKeys {
            tag: 1,
            local: vector_key(),
            remote: SdesKey::generate(),
        };
        let mut s = SrtpSession::new(keys).unwrap();
        assert!(s.unprotect_rtp(&CIPHER).is_err());
        let mut forged = CIPHER;
        forged[20] ^= 1;
        let mut right = SrtpSession::new(SrtpKeys {
            remote: vector_key(),
            ..keys
        })
        .unwrap();
        assert!(right.unprotect_rtp(&forged).is_err());
        assert!(right.unprotect_rtp(&CIPHER[..5]).is_err());
    }

    #[test]
    fn inline_keys_round_trip_and_bad_ones_are_refused() {
        let k = SdesKey::generate();
        let p = k.key_params();
        assert_eq!(p.len(), "inline:".len() + 40);
        assert_eq!(SdesKey::from_key_params(&p), Some(k));
        assert_eq!(
            SdesKey::from_key_params(&format!("{p}|2^20")),
            Some(k),
            "a lifetime is accepted"
        );
        // RFC 4568 section 6.1's example key has an MKI, which we do not support.
        let rfc = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4";
        assert_eq!(SdesKey::from_key_params(rfc), None);
        assert!(
            SdesKey::from_key_params("inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR").is_some()
        );
        for bad in [
            "",
            "inline:",
            "inline:xxx",
            "inline:QUJD",
            "uri:http://x",
            "inline:!!",
        ] {
            assert_eq!(SdesKey::from_key_params(bad), None, "{bad:?}");
        }
        assert_eq!(format!("{k:?}"), "SdesKey(..)");
    }
}
