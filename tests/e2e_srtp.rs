//! SRTP (RFC 3711) keyed by SDES (RFC 4568) through the daemon: a caller offering
//! RTP/SAVP and a volunteer marked `srtp = true`, both test phones, with the audio
//! checked by frequency both ways after decryption; and the key rule: SDES keys
//! over plain UDP/TCP only with `[sip] sdes_over_plain = true`.
//!
//! The daemon's TLS listener is not in its config yet, so the calls here use the
//! explicit plain-transport opt-in; the refusals prove the rule without it.

mod common;

use std::time::Duration;

use common::daemon::*;
use common::phone::*;
use common::volunteer::{Behaviour, Leg, VolunteerPhone};
use hotline::config::Config;
use tokio::sync::Mutex;
use tokio::time::{sleep, Instant};

const PORTS: (u16, u16) = (40000, 40999);
static SERIAL: Mutex<()> = Mutex::const_new(());
const LIMIT: Duration = Duration::from_secs(45);
const LEG_WAIT: Duration = Duration::from_secs(5);
const CALLER_TONE: f64 = 1000.0;
const VOLUNTEER_TONE: f64 = 600.0;

fn allow_plain(cfg: &mut Config) {
    cfg.sip.sdes_over_plain = true;
    cfg.forward.ring_timeout_s = 3;
}

/// One volunteer per entry (id, phone, srtp), on duty at `health` all day, in order.
fn set_roster(d: &Daemon, list: &[(&str, &VolunteerPhone, bool)]) {
    let mut s = String::from("timezone = \"Asia/Shanghai\"\n");
    for (id, phone, srtp) in list {
        s.push_str(&format!(
            "\n[[volunteer]]\nid = \"{id}\"\nname = \"{id}\"\nphone = \"{}\"\nsrtp = {srtp}\n",
            phone.uri()
        ));
    }
    for (id, _, _) in list {
        s.push_str(&format!(
            "\n[[shift]]\nstation = \"health\"\nvolunteer = \"{id}\"\ndays = \"daily\"\nstart = \"00:00\"\nend = \"24:00\"\n"
        ));
    }
    std::fs::write(d.tmp.path().join("roster.toml"), s).unwrap();
    d.server().reload_roster();
    assert_eq!(d.server().roster().current().volunteers.len(), list.len());
}

async fn volunteer(user: &str) -> VolunteerPhone {
    let v = VolunteerPhone::new(
        user,
        Behaviour::Answer {
            after: Duration::from_millis(300),
        },
    )
    .await
    .unwrap();
    v.set_talk_tone(Some(VOLUNTEER_TONE));
    v
}

/// G.711 frames after `since` that are mostly `freq`.
fn frames_at(packets: &[RtpPacket], freq: f64, since: Instant) -> usize {
    packets
        .iter()
        .filter(|p| p.arrival >= since && (p.pt == 0 || p.pt == 8))
        .filter(|p| {
            let pcm = decode(p.pt, &p.payload);
            rms(&pcm) > 500.0 && dominant_energy(&pcm, freq) > 0.6
        })
        .count()
}

async fn wait_hearing(who: &str, packets: impl Fn() -> Vec<RtpPacket>, freq: f64, since: Instant) {
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let p = packets();
        if frames_at(&p, freq, since) >= 25 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{who} did not hear 25 frames of {freq} Hz ({} packets)",
            p.len()
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// A caller through the menu to station 2 (health), with `opts`.
async fn dial_health(d: &Daemon, phone: &Phone, opts: CallOptions) -> Call {
    let call = phone.call(opts).await.unwrap();
    assert_eq!(call.status, 200);
    wait_for_prompt(&call, "menu", Duration::from_secs(3)).await;
    call.send_dtmf_rfc4733('2', 100).await.unwrap();
    let _ = d;
    call
}

async fn assert_audio_both_ways(call: &Call, leg: &Leg) {
    call.play_tone(Some(CALLER_TONE)).unwrap();
    let since = Instant::now();
    wait_hearing("volunteer", || leg.rtp_packets(), CALLER_TONE, since).await;
    wait_hearing("caller", || call.rtp_packets(), VOLUNTEER_TONE, since).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_srtp_call_between_two_test_phones_carries_audio_both_ways() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, allow_plain).await;
        let a = volunteer("alice").await;
        set_roster(&d, &[("alice", &a, true)]);
        let phone = d.phone(Transport::Tcp).await;
        let opts = CallOptions {
            srtp: true,
            ..CallOptions::default()
        };
        let call = dial_health(&d, &phone, opts).await;
        // Our answer is RTP/SAVP with a key of its own, and the menu was heard through it.
        let answer = call.remote_sdp.clone().expect("200 without SDP").raw;
        assert!(answer.contains("RTP/SAVP"), "{answer}");
        assert!(
            answer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{answer}"
        );
        assert!(call.has_media());

        let leg = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        let offer = leg.offer.clone().expect("INVITE without SDP").raw;
        assert!(
            offer.contains("m=audio ") && offer.contains(" RTP/SAVP 0 8 101"),
            "{offer}"
        );
        assert!(leg.is_srtp(), "the volunteer's leg is not keyed: {offer}");
        leg.wait_confirmed(LEG_WAIT).await.unwrap();

        assert_audio_both_ways(&call, &leg).await;
        // Every packet either way authenticated under the keys of its leg.
        assert_eq!(call.srtp_failures(), 0);
        assert_eq!(leg.srtp_failures(), 0);

        assert_eq!(call.hangup().await.unwrap(), 200);
        leg.wait_for_bye(Duration::from_secs(3)).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_caller_reaches_an_srtp_volunteer_and_both_hear_each_other() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, allow_plain).await;
        let a = volunteer("alice").await;
        set_roster(&d, &[("alice", &a, true)]);
        let phone = d.phone(Transport::Udp).await;
        let call = dial_health(&d, &phone, CallOptions::default()).await;
        let answer = call.remote_sdp.clone().expect("200 without SDP").raw;
        assert!(
            answer.contains(" RTP/AVP ") && !answer.contains("a=crypto"),
            "{answer}"
        );
        let leg = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        assert!(leg.is_srtp());
        leg.wait_confirmed(LEG_WAIT).await.unwrap();
        assert_audio_both_ways(&call, &leg).await;
        assert_eq!(leg.srtp_failures(), 0);
        assert_eq!(call.hangup().await.unwrap(), 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdes_keys_over_plain_sip_are_refused_with_488_without_the_opt_in() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        for transport in [Transport::Udp, Transport::Tcp] {
            let phone = d.phone(transport).await;
            let call = phone
                .call(CallOptions {
                    srtp: true,
                    ..CallOptions::default()
                })
                .await
                .unwrap();
            assert_eq!(call.status, 488, "{transport:?}");
        }
        // A plain call on the same daemon is answered as ever.
        let phone = d.phone(Transport::Udp).await;
        let call = phone.call(CallOptions::default()).await.unwrap();
        assert_eq!(call.status, 200);
        assert_eq!(call.hangup().await.unwrap(), 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savp_offers_we_cannot_key_are_refused_with_488() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, allow_plain).await;
        let phone = d.phone(Transport::Udp).await;
        let rtp = phone.rtp_addr().unwrap();
        let plain = build_sdp(rtp, &[0, 101], "sendrecv", 1).replacen("RTP/AVP", "RTP/SAVP", 1);
        for crypto in [
            "",
            "a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=\r\n",
        ] {
            let call = phone
                .call(CallOptions {
                    sdp_override: Some(format!("{plain}{crypto}")),
                    ..CallOptions::default()
                })
                .await
                .unwrap();
            assert_eq!(call.status, 488, "{crypto:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_srtp_volunteer_on_plain_sip_is_not_rung_without_the_opt_in() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |c| c.forward.ring_timeout_s = 3).await;
        let a = volunteer("alice").await;
        let b = volunteer("bob").await;
        set_roster(&d, &[("alice", &a, true), ("bob", &b, false)]);
        let phone = d.phone(Transport::Udp).await;
        let call = dial_health(&d, &phone, CallOptions::default()).await;
        // Alice takes encrypted calls only and sip: is plain: the hunt goes on to Bob.
        let leg = b.wait_for_leg(1, LEG_WAIT).await.unwrap();
        assert!(!leg.is_srtp());
        assert!(
            a.legs().is_empty(),
            "alice was sent an INVITE over plain SIP"
        );
        leg.wait_confirmed(LEG_WAIT).await.unwrap();
        assert_audio_both_ways(&call, &leg).await;
        assert_eq!(call.hangup().await.unwrap(), 200);
    })
    .await;
}
