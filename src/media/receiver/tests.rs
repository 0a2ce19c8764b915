//! The receive side with virtual time: no sockets, no sleeping.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::media::dtmf::{encode_event, tone_samples};
use crate::media::rtp::{write_header, RTP_HEADER_LEN};

const TIMEOUT: Duration = Duration::from_secs(30);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn packet(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; RTP_HEADER_LEN + payload.len()];
    write_header(&mut p, false, pt, seq, ts, 99);
    p[RTP_HEADER_LEN..].copy_from_slice(payload);
    p
}

fn audio(seq: u16) -> Vec<u8> {
    packet(0, seq, u32::from(seq) * 160, &[0xFF; 160])
}

fn caller(t0: Instant) -> Receiver {
    let mut r = Receiver::new(
        RxMedia::new(Codec::Pcmu, Some(101)),
        false,
        TIMEOUT,
        Some(t0),
    );
    r.set_remote(Some(addr(4000)), true);
    r
}

/// Whether the packet was taken, and where it latched.
fn take(r: &mut Receiver, t: Instant, from: u16, p: &[u8]) -> Option<Option<SocketAddr>> {
    r.handle_packet(t, addr(from), p).map(|a| a.latched)
}

#[test]
fn latches_the_first_source_and_drops_others() {
    let t0 = Instant::now();
    let mut r = caller(t0);
    // NAT: the packets come from another port than the SDP said.
    assert_eq!(take(&mut r, t0, 5000, &audio(1)), Some(Some(addr(5000))));
    assert_eq!(take(&mut r, t0, 5000, &audio(2)), Some(None));
    assert_eq!(take(&mut r, t0, 4000, &audio(3)), None, "someone else");
    assert_eq!(take(&mut r, t0, 6000, &audio(3)), None, "someone else");
}

#[test]
fn a_reinvite_moving_the_remote_relatches() {
    let t0 = Instant::now();
    let mut r = caller(t0);
    take(&mut r, t0, 4000, &audio(1));
    // Re-INVITE: the caller's RTP moves to port 4100.
    r.set_remote(Some(addr(4100)), true);
    assert_eq!(
        take(&mut r, t0, 4000, &audio(2)),
        None,
        "a straggler from the old port does not latch back"
    );
    assert_eq!(take(&mut r, t0, 4100, &audio(3)), Some(Some(addr(4100))));
    assert_eq!(take(&mut r, t0, 4100, &audio(4)), Some(None));
    assert_eq!(
        take(&mut r, t0, 4000, &audio(5)),
        None,
        "old port stays out"
    );
}

#[test]
fn a_move_behind_nat_latches_wherever_the_new_stream_comes_from() {
    let t0 = Instant::now();
    let mut r = caller(t0);
    take(&mut r, t0, 5000, &audio(1));
    r.set_remote(Some(addr(4100)), true);
    assert_eq!(take(&mut r, t0, 5100, &audio(2)), Some(Some(addr(5100))));
}

#[test]
fn the_same_remote_again_keeps_the_latch() {
    let t0 = Instant::now();
    let mut r = caller(t0);
    take(&mut r, t0, 5000, &audio(1));
    // Hold and unhold with the same SDP address: the NAT latch stays.
    r.set_remote(Some(addr(4000)), false);
    r.set_remote(Some(addr(4000)), true);
    assert_eq!(take(&mut r, t0, 5000, &audio(2)), Some(None));
    assert_eq!(take(&mut r, t0, 4000, &audio(3)), None);
}

#[test]
fn only_negotiated_payload_types_pass() {
    let t0 = Instant::now();
    let mut r = caller(t0);
    assert!(
        take(&mut r, t0, 4000, &packet(8, 1, 0, &[0xD5; 160])).is_none(),
        "PCMA"
    );
    assert!(
        take(&mut r, t0, 4000, &packet(13, 1, 0, &[1])).is_none(),
        "comfort noise"
    );
    assert!(
        r.handle_packet(t0, addr(4000), &[0x80, 0, 0]).is_none(),
        "malformed"
    );
    assert!(take(&mut r, t0, 4000, &audio(1)).is_some());
}

#[test]
fn dynamic_and_asymmetric_payload_types() {
    let t0 = Instant::now();
    let mut r = caller(t0);
    // They mapped PCMU to 96 and telephone-event to 97; we offered 0 and 101.
    let media = RxMedia {
        codec: Codec::Pcmu,
        audio_pts: [96, 0],
        event_pts: [Some(97), Some(101)],
    };
    r.set_media(media, false);
    let p = packet(96, 1, 0, &[0xFF; 160]);
    let a = r.handle_packet(t0, addr(4000), &p).expect("PCMU on 96");
    assert!(a.audio);
    assert!(take(&mut r, t0, 4000, &packet(0, 2, 160, &[0xFF; 160])).is_some());
    let ev = encode_event(1, false, 10, 160);
    let p = packet(97, 3, 320, &ev);
    let a = r.handle_packet(t0, addr(4000), &p).expect("event on 97");
    assert_eq!((a.audio, a.key), (false, Some(('1', DtmfMethod::Rfc4733))));
    let ev = encode_event(2, false, 10, 160);
    let p = packet(101, 4, 960, &ev);
    let a = r.handle_packet(t0, addr(4000), &p).expect("event on 101");
    assert_eq!(a.key, Some(('2', DtmfMethod::Rfc4733)));
    assert!(take(&mut r, t0, 4000, &packet(98, 5, 0, &ev)).is_none());
}

fn inband_key(r: &mut Receiver, t0: Instant) -> Option<char> {
    let pcm = tone_samples('5', 200, 8000);
    let mut key = None;
    for (i, chunk) in pcm.chunks(160).enumerate() {
        let mut ulaw = [0u8; 160];
        Codec::Pcmu.encode_into(chunk, &mut ulaw[..chunk.len()]);
        let p = packet(0, i as u16, i as u32 * 160, &ulaw[..chunk.len()]);
        if let Some(a) = r.handle_packet(t0, addr(4000), &p) {
            key = key.or(a.key.map(|k| k.0));
        }
    }
    key
}

#[test]
fn inband_keys_only_while_a_key_can_matter() {
    let t0 = Instant::now();
    let mut r = Receiver::new(RxMedia::new(Codec::Pcmu, None), true, TIMEOUT, Some(t0));
    assert!(r.inband_running());
    assert_eq!(inband_key(&mut r, t0), Some('5'));
    r.want_keys(false);
    assert!(!r.inband_running());
    assert_eq!(inband_key(&mut r, t0), None, "bridged: nobody listens");
}

#[test]
fn rtp_timeout_counts_from_the_last_packet() {
    let t0 = Instant::now();
    let mut r = caller(t0);
    assert_eq!(r.poll_timeout(), Some(t0 + TIMEOUT));
    take(&mut r, t0 + Duration::from_secs(10), 4000, &audio(1));
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(40)));
    assert_eq!(r.handle_timeout(t0 + Duration::from_secs(39)), None);
    assert_eq!(
        r.handle_timeout(t0 + Duration::from_secs(40)),
        Some(MediaEvent::RtpTimeout)
    );
    assert_eq!(r.poll_timeout(), None, "once");
    assert_eq!(r.handle_timeout(t0 + Duration::from_secs(99)), None);
}

#[test]
fn not_armed_means_no_timeout_until_armed() {
    let t0 = Instant::now();
    let mut r = Receiver::new(RxMedia::new(Codec::Pcmu, None), false, TIMEOUT, None);
    assert_eq!(r.poll_timeout(), None, "a ringing phone sends nothing");
    assert_eq!(r.handle_timeout(t0 + Duration::from_secs(600)), None);
    r.arm(t0 + Duration::from_secs(5));
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(35)));
}

#[test]
fn hold_is_exempt_from_the_timeout_and_unhold_restarts_it() {
    let t0 = Instant::now();
    let mut r = caller(t0);
    take(&mut r, t0, 4000, &audio(1));
    r.set_remote(Some(addr(4000)), false);
    let late = t0 + TIMEOUT + Duration::from_secs(1);
    assert_eq!(r.handle_timeout(late), None, "on hold, silence is fine");
    assert_eq!(r.poll_timeout(), Some(late + TIMEOUT));
    r.set_remote(Some(addr(4000)), true);
    assert_eq!(
        r.handle_timeout(late + TIMEOUT),
        Some(MediaEvent::RtpTimeout)
    );
}

#[test]
fn counts_the_legs_audio_for_reports() {
    let t0 = Instant::now();
    let mut r = caller(t0);
    for seq in [1u16, 2, 4] {
        let t = t0 + Duration::from_millis(20 * u64::from(seq));
        take(&mut r, t, 4000, &audio(seq));
    }
    take(&mut r, t0, 6000, &audio(5));
    assert_eq!((r.stats().received(), r.stats().lost()), (3, 1));
}
