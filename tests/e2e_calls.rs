//! End-to-end calls against the daemon in-process, over real loopback sockets: the
//! greeting and its RTP, every way of pressing a key, the menu's invalid-key, timeout and
//! barge-in paths, the caller leaving, the RTP timeout, and many calls at once. Each test
//! also checks the call's row in `calls`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::daemon::*;
use common::phone::*;
use hotline::media::codec::Codec;
use hotline::media::prompts::load_wav;
use tokio::sync::Mutex;
use tokio::time::{sleep, Instant};

/// RTP ports for this test binary (the others use their own ranges).
const PORTS: (u16, u16) = (41000, 41999);
/// Timing-sensitive tests and the many-calls test do not run at the same time.
static HEAVY: Mutex<()> = Mutex::const_new(());

const LIMIT: Duration = Duration::from_secs(30);

fn real_prompts() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts")
}

/// The menu's happy path: wait for the menu, press `key` with `press`, hear the station
/// and no_volunteer, get the daemon's BYE; the record says so.
async fn choose_station<F, Fut>(transport: Transport, opts: CallOptions, key: char, press: F)
where
    F: FnOnce(std::sync::Arc<Call>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let d = Daemon::start(PORTS, |_| {}).await;
    let phone = d.phone(transport).await;
    let call_id = format!("{}@127.0.0.1", random_token(12));
    let opts = CallOptions {
        call_id: Some(call_id.clone()),
        ..opts
    };
    let call = std::sync::Arc::new(phone.call(opts).await.unwrap());
    assert_eq!(call.status, 200);
    assert!(
        call.answer_delay() < Duration::from_millis(200),
        "answered after {:?}",
        call.answer_delay()
    );
    wait_for_prompt(&call, "menu", Duration::from_secs(3)).await;
    press(call.clone()).await;
    call.wait_for_bye(Duration::from_secs(5)).await.unwrap();
    let station = format!("station_{}", station_of(key));
    assert_eq!(
        prompt_names(&call.rtp_packets()),
        ["welcome", "menu", station.as_str(), "no_volunteer"]
    );
    let row = d.ended_record(&call_id, Duration::from_secs(3)).await;
    assert_eq!(row.station.as_deref(), Some(station_of(key)));
    assert_eq!(row.keys, key.to_string());
    assert_eq!(row.outcome.as_deref(), Some("no_answer"));
    assert_eq!(row.hangup_by.as_deref(), Some("system"));
    assert!(row.answered_at.is_some());
    assert_eq!(row.dialed.as_deref(), Some("6289110"));
    assert!(row.caller.as_deref().is_some_and(|c| c.contains("tester")));
    assert!(row.volunteer.is_none() && row.connected_at.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc4733_key_2_plays_health_station_then_hangs_up_udp() {
    bounded(LIMIT, async {
        choose_station(
            Transport::Udp,
            CallOptions::default(),
            '2',
            |c| async move { c.send_dtmf_rfc4733('2', 100).await.unwrap() },
        )
        .await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc4733_key_2_plays_health_station_then_hangs_up_tcp() {
    bounded(LIMIT, async {
        choose_station(
            Transport::Tcp,
            CallOptions::default(),
            '2',
            |c| async move { c.send_dtmf_rfc4733('2', 100).await.unwrap() },
        )
        .await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_info_dtmf_relay_key_chooses_station() {
    bounded(LIMIT, async {
        choose_station(
            Transport::Udp,
            CallOptions::default(),
            '5',
            |c| async move { assert_eq!(c.send_dtmf_info('5').await.unwrap(), 200) },
        )
        .await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_info_application_dtmf_key_chooses_station() {
    bounded(LIMIT, async {
        choose_station(
            Transport::Udp,
            CallOptions::default(),
            '1',
            |c| async move {
                let mut info = c.request("INFO");
                info.set_body("application/dtmf", b"1".to_vec());
                let resp = c.send_request(&info).await.unwrap();
                assert_eq!(resp.status(), Some(200));
            },
        )
        .await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inband_key_detected_when_no_telephone_event_offered() {
    bounded(LIMIT, async {
        let opts = CallOptions {
            codecs: vec![0, 8],
            ..CallOptions::default()
        };
        choose_station(Transport::Udp, opts, '6', |c| async move {
            assert!(c.remote_sdp.as_ref().unwrap().telephone_event_pt.is_none());
            c.send_dtmf_inband('6', 120).await.unwrap()
        })
        .await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcma_only_offer_gets_pcma_rtp() {
    bounded(LIMIT, async {
        let opts = CallOptions {
            codecs: vec![8, 101],
            ..CallOptions::default()
        };
        choose_station(Transport::Udp, opts, '4', |c| async move {
            assert_eq!(c.payload_type, Some(8));
            let answer = c.remote_sdp.as_ref().unwrap();
            assert_eq!(answer.audio_pt(), Some(8));
            assert!(answer.payload_types.iter().all(|pt| *pt != 0));
            let pts = c.rtp_stats().payload_types;
            assert_eq!(pts, [8], "the daemon must send A-law only");
            c.send_dtmf_rfc4733('4', 100).await.unwrap();
        })
        .await
    })
    .await;
}

/// With the real recordings: the first second of RTP is byte for byte the start of the
/// PCMU-encoded welcome prompt, and the stream is well formed and paced at 20 ms.
async fn real_greeting(transport: Transport) {
    let _heavy = HEAVY.lock().await;
    let d = Daemon::start(PORTS, |c| c.menu.prompts_dir = real_prompts()).await;
    let phone = d.phone(transport).await;
    let call = phone.call(CallOptions::default()).await.unwrap();
    assert_eq!(call.status, 200);
    assert!(
        call.answer_delay() < Duration::from_millis(200),
        "answered after {:?}",
        call.answer_delay()
    );
    assert_eq!(call.payload_type, Some(0));
    sleep(Duration::from_millis(1200)).await;
    let packets: Vec<RtpPacket> = call.rtp_packets().into_iter().take(50).collect();
    assert_eq!(packets.len(), 50, "1 s of RTP expected within 1.2 s");

    let welcome = load_wav(&real_prompts().join("zh/welcome.wav")).unwrap();
    let expected = &welcome.frames(Codec::Pcmu)[..50 * 160];
    let got: Vec<u8> = packets.iter().flat_map(|p| p.payload.clone()).collect();
    assert!(
        got == expected,
        "the first second is not the welcome prompt"
    );
    let pcm: Vec<i16> = got.iter().map(|b| ulaw_to_linear(*b)).collect();
    assert!(rms(&pcm) > 300.0, "the greeting is not silent");

    // RTP well formed: one SSRC, consecutive seq, +160 timestamps, marker first only.
    let st = rtp_stats(&packets);
    assert_eq!(st.payload_types, [0]);
    assert_eq!(st.ssrcs.len(), 1);
    assert_eq!(st.seq_discontinuities, 0);
    assert_eq!(st.ts_discontinuities, 0);
    assert!(packets[0].marker, "marker on the first packet");
    assert_eq!(st.markers, 1);
    assert!(packets.iter().all(|p| p.payload.len() == 160));
    // ~20 ms spacing.
    let mut gaps: Vec<f64> = packets
        .windows(2)
        .map(|w| w[1].arrival.duration_since(w[0].arrival).as_secs_f64() * 1000.0)
        .collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    gaps.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p95 = gaps[(gaps.len() * 95) / 100];
    assert!(
        (18.0..=22.0).contains(&mean),
        "mean inter-arrival {mean:.1} ms"
    );
    assert!(p95 < 30.0, "p95 inter-arrival {p95:.1} ms");
    assert_eq!(call.hangup().await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_welcome_prompt_is_sent_byte_exact_and_paced_udp() {
    bounded(LIMIT, real_greeting(Transport::Udp)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_welcome_prompt_is_sent_byte_exact_and_paced_tcp() {
    bounded(LIMIT, real_greeting(Transport::Tcp)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_key_plays_invalid_then_short_menu_then_valid_key_works() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        let phone = Phone::new(Transport::Udp, d.addr).await.unwrap();
        let call = phone.call(CallOptions::default()).await.unwrap();
        let call_id = call.dialog.call_id.clone();
        wait_for_prompt(&call, "menu", Duration::from_secs(3)).await;
        call.send_dtmf_rfc4733('9', 60).await.unwrap();
        wait_for_prompt(&call, "menu_short", Duration::from_secs(3)).await;
        // The retry is the keys only (greet-short): no greeting, not the whole menu.
        assert_eq!(
            prompt_names(&call.rtp_packets()),
            ["welcome", "menu", "invalid", "menu_short"]
        );
        call.send_dtmf_rfc4733('2', 60).await.unwrap();
        call.wait_for_bye(Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            prompt_names(&call.rtp_packets()),
            [
                "welcome",
                "menu",
                "invalid",
                "menu_short",
                "station_health",
                "no_volunteer"
            ]
        );
        let row = d.ended_record(&call_id, Duration::from_secs(3)).await;
        assert_eq!(row.keys, "92");
        assert_eq!(row.station.as_deref(), Some("health"));
        assert_eq!(row.outcome.as_deref(), Some("no_answer"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_with_silent_tries_2_repeats_the_short_menu_then_sends_caller_to_desk() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |c| c.menu.silent_tries = 2).await;
        let phone = Phone::new(Transport::Udp, d.addr).await.unwrap();
        let call = phone.call(CallOptions::default()).await.unwrap();
        let call_id = call.dialog.call_id.clone();
        // welcome 0.4 + menu 0.6 + 1 + menu_short 0.4 + 1 + desk 0.4 + no_volunteer 0.4 = 4.2 s.
        call.wait_for_bye(Duration::from_secs(8)).await.unwrap();
        let heard = prompts_heard(&call.rtp_packets());
        let names: Vec<_> = heard.iter().map(|h| h.prompt).collect();
        assert_eq!(
            names,
            [
                "welcome",
                "menu",
                "menu_short",
                "station_desk",
                "no_volunteer"
            ]
        );
        // The keys come back after the timeout (1 s) following the menu's end, not sooner.
        let silence = heard[2].first.duration_since(heard[1].last);
        assert!(
            silence >= Duration::from_millis(900) && silence < Duration::from_millis(1600),
            "menu repeated after {silence:?} of silence"
        );
        let row = d.ended_record(&call_id, Duration::from_secs(3)).await;
        assert_eq!(row.keys, "");
        assert_eq!(row.station.as_deref(), Some("desk"));
        assert_eq!(row.outcome.as_deref(), Some("no_answer"));
        assert_eq!(row.hangup_by.as_deref(), Some("system"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_during_welcome_barges_in() {
    bounded(LIMIT, async {
        let _heavy = HEAVY.lock().await;
        let len = PromptLengths {
            welcome_ms: 3000,
            ..PromptLengths::default()
        };
        let d = Daemon::start_with(PORTS, &len, |_| {}).await;
        let phone = Phone::new(Transport::Udp, d.addr).await.unwrap();
        let call = phone.call(CallOptions::default()).await.unwrap();
        let call_id = call.dialog.call_id.clone();
        wait_for_prompt(&call, "welcome", Duration::from_secs(2)).await;
        sleep(Duration::from_millis(300)).await;
        let pressed = Instant::now();
        call.send_dtmf_rfc4733('3', 60).await.unwrap();
        call.wait_for_bye(Duration::from_secs(5)).await.unwrap();
        let heard = prompts_heard(&call.rtp_packets());
        let names: Vec<_> = heard.iter().map(|h| h.prompt).collect();
        assert_eq!(
            names,
            ["welcome", "station_counseling", "no_volunteer"],
            "no menu after a valid key during the welcome"
        );
        let stopped = heard[0].last.saturating_duration_since(pressed);
        assert!(
            stopped < Duration::from_millis(120),
            "welcome went on {stopped:?} after the key"
        );
        assert!(heard[0].frames < 40, "welcome was cut short");
        let row = d.ended_record(&call_id, Duration::from_secs(3)).await;
        assert_eq!(row.keys, "3");
        assert_eq!(row.station.as_deref(), Some("counseling"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_hangup_mid_prompt_is_abandoned_by_caller() {
    bounded(LIMIT, async {
        let len = PromptLengths {
            menu_ms: 3000,
            ..PromptLengths::default()
        };
        let d = Daemon::start_with(PORTS, &len, |_| {}).await;
        let phone = Phone::new(Transport::Udp, d.addr).await.unwrap();
        let call = phone.call(CallOptions::default()).await.unwrap();
        let call_id = call.dialog.call_id.clone();
        wait_for_prompt(&call, "menu", Duration::from_secs(3)).await;
        assert_eq!(call.hangup().await.unwrap(), 200);
        let row = d.ended_record(&call_id, Duration::from_secs(3)).await;
        assert_eq!(row.outcome.as_deref(), Some("abandoned"));
        assert_eq!(row.hangup_by.as_deref(), Some("caller"));
        assert!(row.station.is_none());
        // Media stops: nothing more arrives after the BYE has been answered.
        sleep(Duration::from_millis(100)).await;
        let n = call.rtp_packets().len();
        sleep(Duration::from_millis(200)).await;
        assert_eq!(call.rtp_packets().len(), n, "RTP after BYE");
        assert_eq!(d.server().active_calls(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_caller_is_hung_up_after_rtp_timeout() {
    bounded(LIMIT, async {
        // Long menu so the call is still in the menu when the timeout hits.
        let len = PromptLengths {
            menu_ms: 8000,
            ..PromptLengths::default()
        };
        let d = Daemon::start_with(PORTS, &len, |c| c.media.rtp_timeout_s = 2).await;
        let phone = Phone::new(Transport::Udp, d.addr).await.unwrap();
        let opts = CallOptions {
            send_rtp: false,
            ..CallOptions::default()
        };
        let call = phone.call(opts).await.unwrap();
        let call_id = call.dialog.call_id.clone();
        let t0 = Instant::now();
        assert!(
            call.wait_for_bye(Duration::from_millis(1500))
                .await
                .is_err(),
            "BYE before the RTP timeout"
        );
        call.wait_for_bye(Duration::from_millis(3000))
            .await
            .unwrap();
        let after = t0.elapsed();
        assert!(
            after >= Duration::from_millis(1800) && after <= Duration::from_millis(4000),
            "BYE {after:?} after answer"
        );
        let row = d.ended_record(&call_id, Duration::from_secs(3)).await;
        assert_eq!(row.outcome.as_deref(), Some("abandoned"));
        assert_eq!(row.hangup_by.as_deref(), Some("system"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_simultaneous_calls_each_get_their_station() {
    bounded(Duration::from_secs(60), async {
        let _heavy = HEAVY.lock().await;
        let d = Daemon::start(PORTS, |_| {}).await;
        let keys = ['1', '2', '3', '4', '5', '6', '0'];
        let mut tasks = Vec::new();
        for i in 0..20 {
            let key = keys[i % keys.len()];
            let addr = d.addr;
            tasks.push(tokio::spawn(async move {
                let phone = Phone::new(Transport::Udp, addr).await.unwrap();
                let call_id = format!("many-{i}-{}@127.0.0.1", random_token(6));
                let opts = CallOptions {
                    call_id: Some(call_id.clone()),
                    from_user: format!("caller{i}"),
                    ..CallOptions::default()
                };
                let call = phone.call(opts).await.unwrap();
                assert_eq!(call.status, 200, "call {i}");
                wait_for_prompt(&call, "menu", Duration::from_secs(5)).await;
                call.send_dtmf_rfc4733(key, 100).await.unwrap();
                call.wait_for_bye(Duration::from_secs(8)).await.unwrap();
                let station = format!("station_{}", station_of(key));
                let names = prompt_names(&call.rtp_packets());
                assert!(
                    names.contains(&station.as_str()),
                    "call {i}: heard {names:?}"
                );
                (call_id, key, i)
            }));
        }
        let mut done = Vec::new();
        for t in tasks {
            done.push(t.await.unwrap());
        }
        for (call_id, key, i) in done {
            let row = d.ended_record(&call_id, Duration::from_secs(5)).await;
            assert_eq!(row.keys, key.to_string(), "call {i}");
            assert_eq!(row.station.as_deref(), Some(station_of(key)), "call {i}");
            assert_eq!(row.outcome.as_deref(), Some("no_answer"), "call {i}");
            assert_eq!(row.hangup_by.as_deref(), Some("system"), "call {i}");
            assert!(row
                .caller
                .as_deref()
                .is_some_and(|c| c.contains(&format!("caller{i}"))));
        }
        assert_eq!(d.all_records().await.len(), 20);
    })
    .await;
}

/// The test's own ear: how [`prompts_heard`] cuts what arrived into prompts.
mod hearing {
    use super::*;
    use common::g711::{encode, tone, PEAK_MINUS_10_DBM0};
    use common::rtp::RtpPacket;

    fn frames(
        freq: f64,
        n: usize,
        seq: u16,
        ts: u32,
        at: Instant,
        every: Duration,
    ) -> Vec<RtpPacket> {
        let pcm = tone(freq, 20 * n as u32, PEAK_MINUS_10_DBM0);
        pcm.chunks(160)
            .enumerate()
            .map(|(i, c)| RtpPacket {
                pt: 0,
                marker: false,
                seq: seq.wrapping_add(i as u16),
                ts: ts.wrapping_add(160 * i as u32),
                ssrc: 7,
                payload: encode(0, c),
                arrival: at + every * i as u32,
            })
            .collect()
    }

    #[test]
    fn one_prompt_arriving_in_bursts_is_heard_once() {
        let t0 = Instant::now();
        let mut p = frames(1700.0, 20, 100, 5000, t0, Duration::from_millis(20));
        // A loaded machine: frames 8.. arrive 150 ms late, in one burst.
        for (i, f) in p.iter_mut().enumerate().skip(8) {
            f.arrival = t0 + Duration::from_millis(300 + i as u64);
        }
        assert_eq!(prompt_names(&p), ["station_health"]);
    }

    #[test]
    fn one_prompt_played_twice_with_silence_between_is_heard_twice() {
        let t0 = Instant::now();
        let mut p = frames(700.0, 10, 100, 5000, t0, Duration::from_millis(20));
        // One second of silence: no packets, the timestamp runs on (8000 samples).
        p.extend(frames(
            700.0,
            10,
            110,
            5000 + 1600 + 8000,
            t0,
            Duration::ZERO,
        ));
        assert_eq!(prompt_names(&p), ["menu", "menu"]);
    }
}
