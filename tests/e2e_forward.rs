//! End-to-end forwarding: a caller picks a station and the daemon rings the volunteers on
//! duty, played by [`common::volunteer::VolunteerPhone`]s on loopback. Audio is checked by
//! frequency (each side sends its own tone), call records by their `calls` and
//! `call_attempts` rows.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::daemon::*;
use common::phone::*;
use common::volunteer::{Behaviour, LegState, VolunteerPhone};
use hotline::config::Config;
use hotline::store::AttemptRow;
use tokio::sync::Mutex;
use tokio::time::{sleep, Instant};

/// RTP ports for this test binary's daemons.
const PORTS: (u16, u16) = (44000, 44999);
/// The tests measure ring and screening timeouts: one at a time on a 2-core machine.
static SERIAL: Mutex<()> = Mutex::const_new(());
const LIMIT: Duration = Duration::from_secs(45);

/// The caller's number, which the volunteer must see as the From display name.
const CALLER: &str = "13912345678";
const CALLER_TONE: f64 = 1000.0;
const VOLUNTEER_TONE: f64 = 600.0;
const RINGBACK: f64 = 450.0;

fn short_timeouts(cfg: &mut Config) {
    cfg.forward.ring_timeout_s = 2;
    cfg.forward.screen_timeout_s = 2;
    cfg.forward.voicemail_max_s = 3;
}

async fn daemon() -> Daemon {
    Daemon::start(PORTS, short_timeouts).await
}

/// A volunteer in the roster: always on duty at `stations`, in the order given.
struct OnDuty<'a> {
    id: &'a str,
    /// Their `phone`: a test phone's URI, or a place nothing answers.
    uri: String,
    screen: bool,
    stations: &'a [&'a str],
}

fn duty<'a>(id: &'a str, phone: &'a VolunteerPhone, stations: &'a [&'a str]) -> OnDuty<'a> {
    OnDuty {
        id,
        uri: phone.uri(),
        screen: false,
        stations,
    }
}

fn roster_text(list: &[OnDuty]) -> String {
    let mut s = String::from("timezone = \"Asia/Shanghai\"\n");
    for v in list {
        s.push_str(&format!(
            "\n[[volunteer]]\nid = \"{}\"\nname = \"{}\"\nphone = \"{}\"\nscreen = {}\n",
            v.id, v.id, v.uri, v.screen
        ));
    }
    for v in list {
        for st in v.stations {
            s.push_str(&format!(
                "\n[[shift]]\nstation = \"{st}\"\nvolunteer = \"{}\"\ndays = \"daily\"\nstart = \"00:00\"\nend = \"24:00\"\n",
                v.id
            ));
        }
    }
    s
}

/// Write the roster and make the daemon load it now.
fn set_roster(d: &Daemon, list: &[OnDuty]) {
    std::fs::write(d.tmp.path().join("roster.toml"), roster_text(list)).unwrap();
    d.server().reload_roster();
    let ids: Vec<String> = d
        .server()
        .roster()
        .current()
        .volunteers
        .iter()
        .map(|v| v.id.clone())
        .collect();
    let want: Vec<String> = list.iter().map(|v| v.id.to_string()).collect();
    assert_eq!(ids, want, "roster not loaded");
}

/// Hunt list ids for `station` right now.
fn on_duty(d: &Daemon, station: &str) -> Vec<String> {
    let roster = d.server().roster().current();
    roster
        .hunt_list(station, Utc::now())
        .iter()
        .map(|v| v.id.clone())
        .collect()
}

async fn volunteer(user: &str, b: Behaviour) -> VolunteerPhone {
    let v = VolunteerPhone::new(user, b).await.unwrap();
    v.set_talk_tone(Some(VOLUNTEER_TONE));
    v
}

fn answers() -> Behaviour {
    Behaviour::Answer {
        after: Duration::from_millis(300),
    }
}

/// A caller on its own phone, through the menu: pressed `key` after the menu started.
struct Caller {
    _phone: Phone,
    call: Call,
    call_id: String,
}

async fn dial_station(d: &Daemon, key: char, opts: CallOptions) -> Caller {
    let phone = d.phone(Transport::Udp).await;
    let call_id = format!("{}@127.0.0.1", random_token(12));
    let call = phone
        .call(CallOptions {
            call_id: Some(call_id.clone()),
            from_user: CALLER.into(),
            ..opts
        })
        .await
        .unwrap();
    assert_eq!(call.status, 200);
    wait_for_prompt(&call, "menu", Duration::from_secs(3)).await;
    call.send_dtmf_rfc4733(key, 100).await.unwrap();
    Caller {
        _phone: phone,
        call,
        call_id,
    }
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

/// The strongest 50 Hz-grid frequency of each of the last few frames, for failure messages.
fn describe(packets: &[RtpPacket]) -> String {
    let tail: Vec<String> = packets
        .iter()
        .filter(|p| p.pt == 0 || p.pt == 8)
        .rev()
        .take(8)
        .map(|p| {
            let pcm = decode(p.pt, &p.payload);
            if rms(&pcm) < 500.0 {
                return "silence".into();
            }
            let best = (2..80)
                .map(|k| k as f64 * 50.0)
                .max_by(|a, b| dominant_energy(&pcm, *a).total_cmp(&dominant_energy(&pcm, *b)))
                .unwrap();
            format!("{best} Hz")
        })
        .collect();
    format!(
        "{} packets, last frames (newest first): {tail:?}",
        packets.len()
    )
}

/// Wait until `frames` frames of `freq` arrived after `since`.
async fn wait_hearing(
    who: &str,
    packets: impl Fn() -> Vec<RtpPacket>,
    freq: f64,
    since: Instant,
    frames: usize,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let p = packets();
        if frames_at(&p, freq, since) >= frames {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "{who} did not hear {frames} frames of {freq} Hz within {limit:?}: {}",
                describe(&p)
            );
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Both directions carry their tone from now on (half a second each way).
async fn assert_audio_both_ways(c: &Caller, leg: &common::volunteer::Leg) {
    c.call.play_tone(Some(CALLER_TONE)).unwrap();
    let since = Instant::now();
    wait_hearing(
        "volunteer",
        || leg.rtp_packets(),
        CALLER_TONE,
        since,
        25,
        Duration::from_secs(4),
    )
    .await;
    wait_hearing(
        "caller",
        || c.call.rtp_packets(),
        VOLUNTEER_TONE,
        since,
        25,
        Duration::from_secs(4),
    )
    .await;
}

/// Keys of the RFC 4733 events received (one per event start), in order.
fn events_heard(packets: &[RtpPacket], event_pt: u8) -> Vec<char> {
    const KEYS: &str = "0123456789*#ABCD";
    packets
        .iter()
        .filter(|p| p.pt == event_pt && p.marker)
        .filter_map(|p| TelephoneEvent::parse(&p.payload))
        .filter_map(|e| KEYS.chars().nth(e.event as usize))
        .collect()
}

/// The call's row once it names the volunteer it was put through to (the record
/// trails our ACK a little), or as it is after 2 s.
async fn connected_record(d: &Daemon, call_id: &str) -> hotline::store::CallRow {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let row = d.record(call_id).await.expect("no call record");
        if row.volunteer.is_some() || Instant::now() >= deadline {
            return row;
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// The call's attempts, once each has ended (the record trails the SIP exchange a
/// little: our ACK can arrive before the daemon writes "answered"), or after 2 s.
async fn attempts(d: &Daemon, call_id: &str) -> Vec<AttemptRow> {
    let store = d.server().store();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        store.flush(Duration::from_secs(5)).await.unwrap();
        let mut a = store.attempts(call_id).await.unwrap();
        a.sort_by_key(|r| (r.attempt_no, r.id));
        if a.iter().all(|r| r.ended_at.is_some()) || Instant::now() >= deadline {
            return a;
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// (volunteer, result, sip_status) of each attempt, for one-line assertions.
fn summary(a: &[AttemptRow]) -> Vec<(String, String, Option<i32>)> {
    a.iter()
        .map(|r| {
            (
                r.volunteer.clone().unwrap_or_default(),
                r.result.clone().unwrap_or_default(),
                r.sip_status,
            )
        })
        .collect()
}

fn att(v: &str, result: &str, status: Option<i32>) -> (String, String, Option<i32>) {
    (v.to_string(), result.to_string(), status)
}

const LEG_WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_call_carries_audio_both_ways_until_the_caller_hangs_up() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let a = volunteer("alice", answers()).await;
        set_roster(&d, &[duty("alice", &a, &["health"])]);

        let c = dial_station(&d, '2', CallOptions::default()).await;
        let leg = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        assert_eq!(leg.caller_display_name().as_deref(), Some(CALLER));
        assert_eq!(leg.request_uri(), a.uri());
        assert!(leg.invite.header("To").unwrap().contains(&a.uri()));
        let offer = leg.offer.clone().expect("INVITE without SDP offer");
        assert_eq!(offer.payload_types, [0, 8, 101], "offer: {}", offer.raw);
        assert_eq!(offer.telephone_event_pt, Some(101));
        leg.wait_confirmed(LEG_WAIT).await.unwrap();

        assert_audio_both_ways(&c, &leg).await;

        // Keys pressed during the conversation reach the other side as RFC 4733 events.
        c.call.send_dtmf_rfc4733('5', 100).await.unwrap();
        leg.send_dtmf_rfc4733('7', 100).await.unwrap();
        sleep(Duration::from_millis(300)).await;
        assert_eq!(events_heard(&leg.rtp_packets(), 101), ['5']);
        assert_eq!(events_heard(&c.call.rtp_packets(), 101), ['7']);

        // Each side sees one continuous stream: the daemon rewrites SSRC, seq and
        // timestamp across prompts, ringback and the bridge.
        let st = c.call.rtp_stats();
        assert_eq!(st.ssrcs.len(), 1, "caller's stream: {st:?}");
        assert_eq!(st.seq_discontinuities, 0, "caller's stream: {st:?}");
        let st = rtp_stats(&leg.rtp_packets());
        assert_eq!(st.ssrcs.len(), 1, "volunteer's stream: {st:?}");
        assert_eq!(st.seq_discontinuities, 0, "volunteer's stream: {st:?}");

        let row = connected_record(&d, &c.call_id).await;
        assert_eq!(row.volunteer.as_deref(), Some("alice"));
        assert!(row.connected_at.is_some());
        assert_eq!(row.station.as_deref(), Some("health"));
        assert_eq!(
            summary(&attempts(&d, &c.call_id).await),
            [att("alice", "answered", Some(200))]
        );

        assert_eq!(c.call.hangup().await.unwrap(), 200);
        leg.wait_for_bye(Duration::from_secs(3)).await.unwrap();
        let row = d.ended_record(&c.call_id, Duration::from_secs(3)).await;
        assert_eq!(row.outcome.as_deref(), Some("connected"));
        assert_eq!(row.hangup_by.as_deref(), Some("caller"));
        assert_eq!(row.volunteer.as_deref(), Some("alice"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_volunteer_is_cancelled_after_ring_timeout_and_the_next_answers() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let a = volunteer("alice", Behaviour::NoAnswer).await;
        let b = volunteer("bob", answers()).await;
        set_roster(
            &d,
            &[duty("alice", &a, &["health"]), duty("bob", &b, &["health"])],
        );

        let c = dial_station(&d, '2', CallOptions::default()).await;
        let la = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        // Ringback (450 Hz, 1 s on) while Alice's phone rings.
        wait_hearing(
            "caller",
            || c.call.rtp_packets(),
            RINGBACK,
            la.invite_at,
            10,
            Duration::from_secs(2),
        )
        .await;
        let cancel_at = la.wait_for_cancel(LEG_WAIT).await.unwrap();
        let rang = cancel_at.duration_since(la.invite_at);
        assert!(
            rang >= Duration::from_millis(1800) && rang <= Duration::from_millis(3000),
            "CANCEL after {rang:?}, ring timeout is 2 s"
        );
        let lb = b.wait_for_leg(1, LEG_WAIT).await.unwrap();
        lb.wait_confirmed(LEG_WAIT).await.unwrap();
        assert_eq!(la.state(), LegState::Cancelled);
        sleep(Duration::from_millis(300)).await;
        assert!(la.final_acked(), "the daemon never ACKed our 487");

        assert_audio_both_ways(&c, &lb).await;
        assert_eq!(
            summary(&attempts(&d, &c.call_id).await),
            [
                att("alice", "no_answer", None),
                att("bob", "answered", Some(200))
            ]
        );
        c.call.hangup().await.unwrap();
        lb.wait_for_bye(Duration::from_secs(3)).await.unwrap();
        let row = d.ended_record(&c.call_id, Duration::from_secs(3)).await;
        assert_eq!(row.outcome.as_deref(), Some("connected"));
        assert_eq!(row.volunteer.as_deref(), Some("bob"));
    })
    .await;
}

/// A final refusal from the first volunteer: the next is rung at once.
async fn refusal_moves_on_at_once(first: Behaviour, result: &str, status: i32) {
    let d = daemon().await;
    let a = volunteer("alice", first).await;
    let b = volunteer("bob", answers()).await;
    set_roster(
        &d,
        &[duty("alice", &a, &["health"]), duty("bob", &b, &["health"])],
    );
    let c = dial_station(&d, '2', CallOptions::default()).await;
    let la = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
    let lb = b.wait_for_leg(1, LEG_WAIT).await.unwrap();
    let gap = lb.invite_at.duration_since(la.invite_at);
    assert!(gap < Duration::from_secs(1), "Bob rung {gap:?} after Alice");
    lb.wait_confirmed(LEG_WAIT).await.unwrap();
    sleep(Duration::from_millis(300)).await;
    assert!(la.final_acked(), "the daemon never ACKed our {status}");
    assert_eq!(
        summary(&attempts(&d, &c.call_id).await),
        [
            att("alice", result, Some(status)),
            att("bob", "answered", Some(200))
        ]
    );
    c.call.hangup().await.unwrap();
    d.ended_record(&c.call_id, Duration::from_secs(3)).await;
}

/// A phone on a TCP port that answers every INVITE with 486 Busy Here; counts the
/// connections made to it. Lives until the test's runtime ends.
async fn busy_tcp_phone() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use common::sip::{response_to, take_stream_message, SipMessage};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                    buf.extend_from_slice(&chunk[..n]);
                    while let Ok(Some(raw)) = take_stream_message(&mut buf) {
                        let Ok(msg) = SipMessage::parse(&raw) else {
                            continue;
                        };
                        if msg.method() == Some("INVITE") {
                            let busy = response_to(&msg, 486, "Busy Here", "busy1");
                            let _ = stream.write_all(&busy.to_bytes()).await;
                        }
                    }
                }
            });
        }
    });
    (addr, connections)
}

/// A volunteer's phone over TCP with nothing listening: the attempt fails at once,
/// `failed` with no SIP status (none came) and the reason, and the next is rung
/// without waiting out the ring timeout. A phone that does listen on TCP still gets
/// its INVITE, on the one connection opened to check it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tcp_connection_is_a_failed_attempt_with_its_reason() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let b = volunteer("bob", answers()).await;
        // A loopback port nobody listens on: bound, then closed again.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let (busy, connections) = busy_tcp_phone().await;
        let over_tcp = |id, addr| OnDuty {
            id,
            uri: format!("sip:{id}@{addr};transport=tcp"),
            screen: false,
            stations: &["health"],
        };
        set_roster(
            &d,
            &[
                over_tcp("carol", dead),
                over_tcp("dave", busy),
                duty("bob", &b, &["health"]),
            ],
        );
        let c = dial_station(&d, '2', CallOptions::default()).await;
        let keyed = Instant::now();
        let lb = b.wait_for_leg(1, LEG_WAIT).await.unwrap();
        let waited = lb.invite_at.duration_since(keyed);
        assert!(
            waited < Duration::from_secs(1),
            "Bob rung {waited:?} after the key; the ring timeout is 2 s"
        );
        lb.wait_confirmed(LEG_WAIT).await.unwrap();
        let rows = attempts(&d, &c.call_id).await;
        assert_eq!(
            summary(&rows),
            [
                att("carol", "failed", None),
                att("dave", "busy", Some(486)),
                att("bob", "answered", Some(200))
            ]
        );
        let reason = rows[0].reason.as_deref().unwrap_or_default();
        assert!(reason.contains("connection refused"), "reason: {reason:?}");
        assert_eq!(rows[1].reason, None);
        assert_eq!(connections.load(Ordering::SeqCst), 1, "connections to Dave");
        c.call.hangup().await.unwrap();
        d.ended_record(&c.call_id, Duration::from_secs(3)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_volunteer_is_skipped_at_once() {
    let _g = SERIAL.lock().await;
    bounded(
        LIMIT,
        refusal_moves_on_at_once(Behaviour::Busy, "busy", 486),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declining_volunteer_is_skipped_at_once() {
    let _g = SERIAL.lock().await;
    bounded(
        LIMIT,
        refusal_moves_on_at_once(Behaviour::Decline, "declined", 603),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_hanging_up_while_ringing_cancels_the_volunteer() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let a = volunteer("alice", Behaviour::NoAnswer).await;
        set_roster(&d, &[duty("alice", &a, &["health"])]);
        let c = dial_station(&d, '2', CallOptions::default()).await;
        let la = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        sleep(Duration::from_millis(300)).await;
        assert_eq!(c.call.hangup().await.unwrap(), 200);
        let cancel_at = la.wait_for_cancel(Duration::from_secs(2)).await.unwrap();
        assert!(
            cancel_at.duration_since(la.invite_at) < Duration::from_millis(1500),
            "CANCEL came only at the ring timeout"
        );
        assert_eq!(la.state(), LegState::Cancelled);
        let row = d.ended_record(&c.call_id, Duration::from_secs(3)).await;
        assert_eq!(row.outcome.as_deref(), Some("abandoned"));
        assert_eq!(row.hangup_by.as_deref(), Some("caller"));
        assert!(row.volunteer.is_none() && row.connected_at.is_none());
        assert_eq!(
            summary(&attempts(&d, &c.call_id).await),
            [att("alice", "cancelled", None)]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volunteer_hanging_up_first_ends_the_callers_leg() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let a = volunteer("alice", answers()).await;
        set_roster(&d, &[duty("alice", &a, &["health"])]);
        let c = dial_station(&d, '2', CallOptions::default()).await;
        let la = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        la.wait_confirmed(LEG_WAIT).await.unwrap();
        assert_audio_both_ways(&c, &la).await;
        assert_eq!(la.hangup().await.unwrap(), 200);
        c.call.wait_for_bye(Duration::from_secs(3)).await.unwrap();
        let row = d.ended_record(&c.call_id, Duration::from_secs(3)).await;
        assert_eq!(row.outcome.as_deref(), Some("connected"));
        assert_eq!(row.hangup_by.as_deref(), Some("volunteer"));
    })
    .await;
}

/// Screened Alice answers and hears the screen prompt; Bob answers if she does not accept.
async fn screened(
    d: &Daemon,
    a: &VolunteerPhone,
    b: &VolunteerPhone,
) -> (Caller, Arc<common::volunteer::Leg>) {
    set_roster(
        d,
        &[
            OnDuty {
                id: "alice",
                uri: a.uri(),
                screen: true,
                stations: &["health"],
            },
            duty("bob", b, &["health"]),
        ],
    );
    let c = dial_station(d, '2', CallOptions::default()).await;
    let la = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
    la.wait_confirmed(LEG_WAIT).await.unwrap();
    wait_hearing(
        "screened volunteer",
        || la.rtp_packets(),
        3100.0,
        la.invite_at,
        5,
        Duration::from_secs(2),
    )
    .await;
    (c, la)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screened_volunteer_pressing_1_is_bridged() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let a = volunteer("alice", answers()).await;
        let b = volunteer("bob", answers()).await;
        let (c, la) = screened(&d, &a, &b).await;
        la.send_dtmf_rfc4733('1', 100).await.unwrap();
        assert_audio_both_ways(&c, &la).await;
        assert!(b.legs().is_empty(), "Bob rung although Alice accepted");
        assert!(!la.bye_received());
        assert_eq!(
            summary(&attempts(&d, &c.call_id).await),
            [att("alice", "answered", Some(200))]
        );
        c.call.hangup().await.unwrap();
        let row = d.ended_record(&c.call_id, Duration::from_secs(3)).await;
        assert_eq!(row.volunteer.as_deref(), Some("alice"));
        assert_eq!(row.outcome.as_deref(), Some("connected"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screened_volunteer_pressing_1_by_sip_info_is_bridged() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let a = volunteer("alice", answers()).await;
        let b = volunteer("bob", answers()).await;
        let (c, la) = screened(&d, &a, &b).await;
        assert_eq!(la.send_dtmf_info('1').await.unwrap(), 200);
        assert_audio_both_ways(&c, &la).await;
        assert!(b.legs().is_empty(), "Bob rung although Alice accepted");
        c.call.hangup().await.unwrap();
        let row = d.ended_record(&c.call_id, Duration::from_secs(3)).await;
        assert_eq!(row.volunteer.as_deref(), Some("alice"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screened_volunteer_pressing_another_key_is_hung_up_and_the_next_is_rung() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let a = volunteer("alice", answers()).await;
        let b = volunteer("bob", answers()).await;
        let (c, la) = screened(&d, &a, &b).await;
        // The daemon may act on the key's first packet and hang up before the end packets
        // are out, which stops our sending: not an error.
        let _ = la.send_dtmf_rfc4733('9', 100).await;
        la.wait_for_bye(Duration::from_secs(2)).await.unwrap();
        let lb = b.wait_for_leg(1, LEG_WAIT).await.unwrap();
        lb.wait_confirmed(LEG_WAIT).await.unwrap();
        assert_audio_both_ways(&c, &lb).await;
        assert_eq!(
            summary(&attempts(&d, &c.call_id).await),
            [
                att("alice", "no_answer", Some(200)),
                att("bob", "answered", Some(200))
            ]
        );
        c.call.hangup().await.unwrap();
        let row = d.ended_record(&c.call_id, Duration::from_secs(3)).await;
        assert_eq!(row.volunteer.as_deref(), Some("bob"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screened_volunteer_pressing_nothing_is_hung_up_at_the_screen_timeout() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let a = volunteer("alice", answers()).await;
        let b = volunteer("bob", answers()).await;
        let (c, la) = screened(&d, &a, &b).await;
        let answered = Instant::now();
        let bye_at = la.wait_for_bye(Duration::from_secs(4)).await.unwrap();
        let waited = bye_at.duration_since(answered);
        assert!(
            waited >= Duration::from_millis(1000),
            "BYE after only {waited:?}; screen timeout is 2 s"
        );
        let lb = b.wait_for_leg(1, LEG_WAIT).await.unwrap();
        lb.wait_confirmed(LEG_WAIT).await.unwrap();
        assert_eq!(
            summary(&attempts(&d, &c.call_id).await),
            [
                att("alice", "no_answer", Some(200)),
                att("bob", "answered", Some(200))
            ]
        );
        c.call.hangup().await.unwrap();
        d.ended_record(&c.call_id, Duration::from_secs(3)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_answering_takes_a_voicemail_until_the_caller_hangs_up() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |cfg| {
            short_timeouts(cfg);
            cfg.forward.voicemail = true;
        })
        .await;
        let a = volunteer("alice", Behaviour::NoAnswer).await;
        set_roster(&d, &[duty("alice", &a, &["health"])]);
        let c = dial_station(&d, '2', CallOptions::default()).await;
        let la = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        la.wait_for_cancel(LEG_WAIT).await.unwrap();
        wait_for_prompt(&c.call, "beep", Duration::from_secs(3)).await;
        let heard = prompt_names(&c.call.rtp_packets());
        let n = heard.len();
        assert_eq!(heard[n - 2..], ["all_busy", "beep"], "heard {heard:?}");
        // The beep is 400 ms long; recording starts after it.
        sleep(Duration::from_millis(500)).await;
        c.call.play_tone(Some(CALLER_TONE)).unwrap();
        sleep(Duration::from_secs(2)).await;
        assert_eq!(c.call.hangup().await.unwrap(), 200);

        let row = d.ended_record(&c.call_id, Duration::from_secs(5)).await;
        assert_eq!(row.outcome.as_deref(), Some("voicemail"));
        assert_eq!(row.hangup_by.as_deref(), Some("caller"));
        let path = row.voicemail.expect("no voicemail path in the row");
        let mut wav = hound::WavReader::open(&path).unwrap();
        let spec = wav.spec();
        assert_eq!((spec.sample_rate, spec.channels), (8000, 1), "{spec:?}");
        let pcm: Vec<i16> = wav.samples::<i16>().map(|s| s.unwrap()).collect();
        let secs = pcm.len() as f64 / 8000.0;
        assert!((1.6..=2.6).contains(&secs), "voicemail is {secs:.2} s long");
        let share = dominant_energy(&pcm, CALLER_TONE);
        assert!(
            share > 0.8,
            "only {share:.2} of the message's energy at 1000 Hz"
        );
        let toned = pcm
            .chunks(160)
            .filter(|f| rms(f) > 500.0 && dominant_energy(f, CALLER_TONE) > 0.6)
            .count();
        assert!(
            toned >= 80,
            "only {toned} frames (20 ms) of the tone recorded"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_reload_reaches_the_new_volunteer_without_touching_a_bridged_call() {
    let _g = SERIAL.lock().await;
    bounded(Duration::from_secs(60), async {
        let d = daemon().await;
        let a = volunteer("alice", answers()).await;
        let b = volunteer("bob", answers()).await;
        set_roster(&d, &[duty("alice", &a, &["health"])]);
        let c1 = dial_station(&d, '2', CallOptions::default()).await;
        let la = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        la.wait_confirmed(LEG_WAIT).await.unwrap();
        assert_audio_both_ways(&c1, &la).await;

        set_roster(&d, &[duty("alice", &a, &[]), duty("bob", &b, &["health"])]);
        assert_eq!(on_duty(&d, "health"), ["bob"]);
        let c2 = dial_station(&d, '2', CallOptions::default()).await;
        let lb = b.wait_for_leg(1, LEG_WAIT).await.unwrap();
        lb.wait_confirmed(LEG_WAIT).await.unwrap();
        assert_audio_both_ways(&c2, &lb).await;
        assert_eq!(
            a.legs().len(),
            1,
            "Alice rung again after leaving the roster"
        );

        // Call 1 is untouched: audio still flows both ways.
        let since = Instant::now();
        wait_hearing(
            "Alice",
            || la.rtp_packets(),
            CALLER_TONE,
            since,
            25,
            Duration::from_secs(3),
        )
        .await;
        wait_hearing(
            "caller 1",
            || c1.call.rtp_packets(),
            VOLUNTEER_TONE,
            since,
            25,
            Duration::from_secs(3),
        )
        .await;
        assert!(!la.bye_received() && !c1.call.bye_received());

        // A roster naming an unknown station is rejected; the last good one stays.
        let bad = roster_text(&[duty("bob", &b, &["nowhere"])]);
        std::fs::write(d.tmp.path().join("roster.toml"), bad).unwrap();
        d.server().reload_roster();
        assert_eq!(on_duty(&d, "health"), ["bob"]);
        // Bob is free again once call 2 ends.
        c2.call.hangup().await.unwrap();
        d.ended_record(&c2.call_id, Duration::from_secs(3)).await;
        // The file watcher sees the bad file too (about 2 s): it must not win either.
        sleep(Duration::from_millis(2500)).await;
        assert_eq!(on_duty(&d, "health"), ["bob"]);
        let c3 = dial_station(&d, '2', CallOptions::default()).await;
        let lb3 = b.wait_for_leg(2, LEG_WAIT).await.unwrap();
        lb3.wait_confirmed(LEG_WAIT).await.unwrap();
        let row3 = connected_record(&d, &c3.call_id).await;
        assert_eq!(row3.volunteer.as_deref(), Some("bob"));

        c3.call.hangup().await.unwrap();
        c1.call.hangup().await.unwrap();
        la.wait_for_bye(Duration::from_secs(3)).await.unwrap();
        let row1 = d.ended_record(&c1.call_id, Duration::from_secs(3)).await;
        assert_eq!(row1.volunteer.as_deref(), Some("alice"));
        assert_eq!(row1.outcome.as_deref(), Some("connected"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volunteer_on_a_call_is_skipped_at_their_other_station() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let a = volunteer("alice", answers()).await;
        let b = volunteer("bob", answers()).await;
        set_roster(
            &d,
            &[
                duty("alice", &a, &["health", "desk"]),
                duty("bob", &b, &["desk"]),
            ],
        );
        assert_eq!(on_duty(&d, "desk"), ["alice", "bob"]);
        let c1 = dial_station(&d, '2', CallOptions::default()).await;
        let la = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        la.wait_confirmed(LEG_WAIT).await.unwrap();

        let c2 = dial_station(&d, '0', CallOptions::default()).await;
        let lb = b.wait_for_leg(1, LEG_WAIT).await.unwrap();
        lb.wait_confirmed(LEG_WAIT).await.unwrap();
        assert_eq!(a.legs().len(), 1, "Alice rung while on call 1");
        assert_eq!(
            summary(&attempts(&d, &c2.call_id).await),
            [att("bob", "answered", Some(200))]
        );
        c2.call.hangup().await.unwrap();
        c1.call.hangup().await.unwrap();
        d.ended_record(&c1.call_id, Duration::from_secs(3)).await;
        d.ended_record(&c2.call_id, Duration::from_secs(3)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcma_caller_and_pcmu_volunteer_hear_each_other_through_transcoding() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let a = volunteer("alice", answers()).await;
        a.set_codec(0);
        set_roster(&d, &[duty("alice", &a, &["health"])]);
        let opts = CallOptions {
            codecs: vec![8, 101],
            ..CallOptions::default()
        };
        let c = dial_station(&d, '2', opts).await;
        assert_eq!(c.call.payload_type, Some(8));
        let la = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        la.wait_confirmed(LEG_WAIT).await.unwrap();
        let since = Instant::now();
        assert_audio_both_ways(&c, &la).await;
        let pts = |p: Vec<RtpPacket>| -> Vec<u8> {
            let mut v: Vec<u8> = p
                .iter()
                .filter(|x| x.arrival >= since)
                .map(|x| x.pt)
                .collect();
            v.sort();
            v.dedup();
            v
        };
        assert_eq!(pts(la.rtp_packets()), [0], "volunteer must get PCMU");
        assert_eq!(pts(c.call.rtp_packets()), [8], "caller must get PCMA");
        c.call.hangup().await.unwrap();
        d.ended_record(&c.call_id, Duration::from_secs(3)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_the_same_host_is_followed_once() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let b = volunteer("bob", answers()).await;
        let a = volunteer("alice", Behaviour::Redirect(b.uri())).await;
        set_roster(&d, &[duty("alice", &a, &["health"])]);
        let c = dial_station(&d, '2', CallOptions::default()).await;
        let la = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        let lb = b.wait_for_leg(1, LEG_WAIT).await.unwrap();
        assert_eq!(lb.request_uri(), b.uri());
        assert_eq!(lb.caller_display_name().as_deref(), Some(CALLER));
        lb.wait_confirmed(LEG_WAIT).await.unwrap();
        assert!(la.final_acked(), "the daemon never ACKed our 302");
        assert_audio_both_ways(&c, &lb).await;
        let rows = attempts(&d, &c.call_id).await;
        // Following a redirect is the same attempt at the same volunteer.
        assert_eq!(summary(&rows), [att("alice", "answered", Some(200))]);
        c.call.hangup().await.unwrap();
        lb.wait_for_bye(Duration::from_secs(3)).await.unwrap();
        let row = d.ended_record(&c.call_id, Duration::from_secs(3)).await;
        assert_eq!(row.volunteer.as_deref(), Some("alice"));
        assert_eq!(row.outcome.as_deref(), Some("connected"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_another_host_is_refused_and_the_next_volunteer_rung() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let a = volunteer("alice", Behaviour::Redirect("sip:x@192.0.2.1".into())).await;
        let b = volunteer("bob", answers()).await;
        set_roster(
            &d,
            &[duty("alice", &a, &["health"]), duty("bob", &b, &["health"])],
        );
        let c = dial_station(&d, '2', CallOptions::default()).await;
        let la = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        let lb = b.wait_for_leg(1, LEG_WAIT).await.unwrap();
        let gap = lb.invite_at.duration_since(la.invite_at);
        assert!(gap < Duration::from_secs(1), "Bob rung {gap:?} after Alice");
        lb.wait_confirmed(LEG_WAIT).await.unwrap();
        let rows = attempts(&d, &c.call_id).await;
        assert!(
            rows.iter()
                .all(|r| !r.target.as_deref().unwrap_or("").contains("192.0.2.1")),
            "the daemon dialled the redirect target: {rows:?}"
        );
        assert_eq!(
            summary(&rows),
            [
                att("alice", "failed", Some(302)),
                att("bob", "answered", Some(200))
            ]
        );
        c.call.hangup().await.unwrap();
        d.ended_record(&c.call_id, Duration::from_secs(3)).await;
    })
    .await;
}

/// Issue 6: a re-INVITE that moves the caller's RTP to a new port mid-bridge keeps
/// audio both ways (mobiles do it on handover). The old port goes on sending silence,
/// and must not win the stream back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinvite_moving_the_callers_rtp_keeps_audio_both_ways() {
    const MOVED_TONE: f64 = 1400.0;
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let a = volunteer("alice", answers()).await;
        set_roster(&d, &[duty("alice", &a, &["health"])]);
        let c = dial_station(&d, '2', CallOptions::default()).await;
        let la = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        la.wait_confirmed(LEG_WAIT).await.unwrap();
        assert_audio_both_ways(&c, &la).await;
        c.call.play_tone(None).unwrap();

        let moved = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let sdp = common::sdp::build_sdp(moved.local_addr().unwrap(), &[0, 101], "sendrecv", 3);
        assert_eq!(c.call.reinvite_with(sdp).await.unwrap().status, 200);
        let daemon_rtp = c.call.remote_rtp.expect("daemon's RTP address");
        let heard = Arc::new(std::sync::Mutex::new(Vec::<RtpPacket>::new()));
        let ear = {
            let (moved, heard) = (moved.clone(), heard.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                while let Ok((n, _)) = moved.recv_from(&mut buf).await {
                    if let Some(p) = common::rtp::parse_rtp(&buf[..n], Instant::now()) {
                        heard.lock().unwrap().push(p);
                    }
                }
            })
        };
        let mouth = {
            let moved = moved.clone();
            tokio::spawn(async move {
                let pcm = common::g711::tone(MOVED_TONE, 4000, 8000.0);
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                for (i, frame) in pcm.chunks(160).enumerate() {
                    tick.tick().await;
                    let payload = common::g711::encode(0, frame);
                    let (seq, ts) = (i as u16, i as u32 * 160);
                    let p = common::rtp::build_rtp(0, i == 0, seq, ts, 0x5EED, &payload);
                    let _ = moved.send_to(&p, daemon_rtp).await;
                }
            })
        };
        let since = Instant::now();
        wait_hearing(
            "volunteer",
            || la.rtp_packets(),
            MOVED_TONE,
            since,
            25,
            Duration::from_secs(4),
        )
        .await;
        wait_hearing(
            "caller on the new port",
            || heard.lock().unwrap().clone(),
            VOLUNTEER_TONE,
            since,
            25,
            Duration::from_secs(4),
        )
        .await;
        mouth.abort();
        ear.abort();
        c.call.hangup().await.unwrap();
        let row = d.ended_record(&c.call_id, Duration::from_secs(3)).await;
        assert_eq!(row.outcome.as_deref(), Some("connected"));
    })
    .await;
}

/// Alice plays a 1400 Hz announcement as early media and answers 1.5 s later.
async fn early_media_volunteer() -> VolunteerPhone {
    volunteer(
        "alice",
        Behaviour::EarlyMedia {
            tone_hz: 1400.0,
            answer_after: Some(Duration::from_millis(1500)),
        },
    )
    .await
}

/// Early media, then the bridge, is one stream on each side (issue 6): no sequence
/// number repeats or jumps, which RFC 3550 A.1 receivers would drop as duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_media_then_bridge_keeps_each_sides_sequence_unbroken() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let a = early_media_volunteer().await;
        set_roster(&d, &[duty("alice", &a, &["health"])]);
        let c = dial_station(&d, '2', CallOptions::default()).await;
        let la = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        la.wait_confirmed(LEG_WAIT).await.unwrap();
        assert_audio_both_ways(&c, &la).await;
        for (side, packets) in [
            ("caller", c.call.rtp_packets()),
            ("volunteer", la.rtp_packets()),
        ] {
            let st = rtp_stats(&packets);
            assert_eq!(st.ssrcs.len(), 1, "{side}'s stream: {st:?}");
            assert_eq!(st.seq_discontinuities, 0, "{side}'s stream: {st:?}");
        }
        c.call.hangup().await.unwrap();
        d.ended_record(&c.call_id, Duration::from_secs(3)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_media_from_the_volunteer_replaces_ringback_until_they_answer() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let a = early_media_volunteer().await;
        set_roster(&d, &[duty("alice", &a, &["health"])]);
        let c = dial_station(&d, '2', CallOptions::default()).await;
        let la = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        wait_hearing(
            "caller",
            || c.call.rtp_packets(),
            1400.0,
            la.invite_at,
            20,
            Duration::from_secs(2),
        )
        .await;
        la.wait_confirmed(LEG_WAIT).await.unwrap();
        assert_audio_both_ways(&c, &la).await;
        c.call.hangup().await.unwrap();
        let row = d.ended_record(&c.call_id, Duration::from_secs(3)).await;
        assert_eq!(row.outcome.as_deref(), Some("connected"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_crossing_the_ring_timeout_cancel_is_acked_and_hung_up() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let a = volunteer("alice", Behaviour::AnswerWhenCancelled).await;
        let b = volunteer("bob", answers()).await;
        set_roster(
            &d,
            &[duty("alice", &a, &["health"]), duty("bob", &b, &["health"])],
        );
        let c = dial_station(&d, '2', CallOptions::default()).await;
        let la = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        la.wait_for_cancel(LEG_WAIT).await.unwrap();
        // Alice's 200 came too late: the daemon must ACK it and hang up her leg.
        la.wait_confirmed(Duration::from_secs(3)).await.unwrap();
        la.wait_for_bye(Duration::from_secs(3)).await.unwrap();
        assert!(la.final_acked(), "Alice's 200 was never ACKed");
        let lb = b.wait_for_leg(1, LEG_WAIT).await.unwrap();
        lb.wait_confirmed(LEG_WAIT).await.unwrap();
        assert_audio_both_ways(&c, &lb).await;
        assert_eq!(
            summary(&attempts(&d, &c.call_id).await),
            [
                att("alice", "no_answer", None),
                att("bob", "answered", Some(200))
            ]
        );
        c.call.hangup().await.unwrap();
        let row = d.ended_record(&c.call_id, Duration::from_secs(3)).await;
        assert_eq!(row.volunteer.as_deref(), Some("bob"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_hanging_up_during_screening_hangs_up_the_volunteer() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = daemon().await;
        let a = volunteer("alice", answers()).await;
        let b = volunteer("bob", answers()).await;
        let (c, la) = screened(&d, &a, &b).await;
        assert_eq!(c.call.hangup().await.unwrap(), 200);
        la.wait_for_bye(Duration::from_secs(2)).await.unwrap();
        let row = d.ended_record(&c.call_id, Duration::from_secs(3)).await;
        assert_eq!(row.outcome.as_deref(), Some("abandoned"));
        assert_eq!(row.hangup_by.as_deref(), Some("caller"));
        assert!(row.volunteer.is_none() && row.connected_at.is_none());
        assert_eq!(
            summary(&attempts(&d, &c.call_id).await),
            [att("alice", "cancelled", Some(200))]
        );
        sleep(Duration::from_millis(500)).await;
        assert!(b.legs().is_empty(), "Bob rung for a caller who had left");
    })
    .await;
}

/// The confirmation prompt ("connecting you to ...") for the dial-at-the-key tests:
/// long enough that ringing only after it would show.
const CONFIRMATION_MS: u32 = 2500;

fn long_confirmation() -> PromptLengths {
    PromptLengths {
        other_ms: CONFIRMATION_MS,
        ..PromptLengths::default()
    }
}

/// Arrival of the first frame of `freq` after `since`.
fn first_frame_at(packets: &[RtpPacket], freq: f64, since: Instant) -> Option<Instant> {
    packets
        .iter()
        .filter(|p| p.arrival >= since && (p.pt == 0 || p.pt == 8))
        .find(|p| {
            let pcm = decode(p.pt, &p.payload);
            rms(&pcm) > 500.0 && dominant_energy(&pcm, freq) > 0.6
        })
        .map(|p| p.arrival)
}

/// Issue 6 item 5: the first volunteer's INVITE leaves at the key (from the key's
/// first RTP packet leaving the caller's phone to the INVITE reaching the volunteer's,
/// median of five calls under 50 ms), while the caller hears the whole confirmation
/// and only then ringback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volunteer_is_rung_at_the_key_while_the_caller_hears_the_confirmation() {
    let _g = SERIAL.lock().await;
    bounded(Duration::from_secs(90), async {
        let d = Daemon::start_with(PORTS, &long_confirmation(), |cfg| {
            short_timeouts(cfg);
            // Ringing outlasts the confirmation.
            cfg.forward.ring_timeout_s = 10;
        })
        .await;
        let a = volunteer("alice", Behaviour::NoAnswer).await;
        set_roster(&d, &[duty("alice", &a, &["health"])]);
        let mut key_to_invite = Vec::new();
        for n in 1..=5 {
            let c = dial_station(&d, '2', CallOptions::default()).await;
            let leg = a.wait_for_leg(n, LEG_WAIT).await.unwrap();
            let key_sent = c.call.dtmf_sent_at();
            assert_eq!(key_sent.len(), 1, "one key pressed");
            key_to_invite.push(leg.invite_at.saturating_duration_since(key_sent[0]));
            if n == 1 {
                // The whole confirmation, then ringback (or nothing before it ends).
                wait_hearing(
                    "caller",
                    || c.call.rtp_packets(),
                    RINGBACK,
                    leg.invite_at,
                    10,
                    Duration::from_secs(CONFIRMATION_MS as u64 / 1000 + 3),
                )
                .await;
                let packets = c.call.rtp_packets();
                let heard = prompts_heard(&packets);
                let station = heard
                    .iter()
                    .find(|h| h.prompt == "station_health")
                    .unwrap_or_else(|| panic!("no confirmation heard: {heard:?}"));
                assert!(
                    station.frames as u32 >= CONFIRMATION_MS / 20 - 2,
                    "confirmation cut short: {station:?}"
                );
                assert!(
                    leg.invite_at < station.first + Duration::from_millis(500),
                    "INVITE only after the confirmation had played for a while"
                );
                let ringback = first_frame_at(&packets, RINGBACK, leg.invite_at).unwrap();
                assert!(
                    ringback >= station.last,
                    "ringback over the confirmation: {ringback:?} < {:?}",
                    station.last
                );
            }
            assert_eq!(c.call.hangup().await.unwrap(), 200);
            leg.wait_for_cancel(LEG_WAIT).await.unwrap();
            d.ended_record(&c.call_id, Duration::from_secs(3)).await;
        }
        key_to_invite.sort();
        let median = key_to_invite[key_to_invite.len() / 2];
        println!("key -> INVITE: median {median:?}, all {key_to_invite:?}");
        assert!(
            median < Duration::from_millis(50),
            "key -> INVITE median {median:?} (all {key_to_invite:?})"
        );
    })
    .await;
}

/// A volunteer who answers while the confirmation still plays is put through at once:
/// the confirmation stops and the two hear each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volunteer_answering_during_the_confirmation_stops_it_and_is_bridged() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = Daemon::start_with(PORTS, &long_confirmation(), short_timeouts).await;
        let a = volunteer("alice", answers()).await;
        set_roster(&d, &[duty("alice", &a, &["health"])]);
        let c = dial_station(&d, '2', CallOptions::default()).await;
        let la = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        la.wait_confirmed(LEG_WAIT).await.unwrap();
        assert_audio_both_ways(&c, &la).await;
        let heard = prompts_heard(&c.call.rtp_packets());
        let station = heard
            .iter()
            .find(|h| h.prompt == "station_health")
            .unwrap_or_else(|| panic!("no confirmation heard: {heard:?}"));
        assert!(
            (station.frames as u32) < CONFIRMATION_MS / 20 / 2,
            "the confirmation played on after the answer: {station:?}"
        );
        let st = c.call.rtp_stats();
        assert_eq!(st.seq_discontinuities, 0, "caller's stream: {st:?}");
        c.call.hangup().await.unwrap();
        let row = d.ended_record(&c.call_id, Duration::from_secs(3)).await;
        assert_eq!(row.outcome.as_deref(), Some("connected"));
        assert_eq!(row.volunteer.as_deref(), Some("alice"));
    })
    .await;
}

/// Screening goes on beside the confirmation: the volunteer hears "press 1" while the
/// caller still hears "connecting you to ...", and pressing 1 bridges at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screened_volunteer_hears_the_screening_prompt_during_the_confirmation() {
    let _g = SERIAL.lock().await;
    bounded(LIMIT, async {
        let d = Daemon::start_with(PORTS, &long_confirmation(), short_timeouts).await;
        let a = volunteer("alice", answers()).await;
        set_roster(
            &d,
            &[OnDuty {
                id: "alice",
                uri: a.uri(),
                screen: true,
                stations: &["health"],
            }],
        );
        let c = dial_station(&d, '2', CallOptions::default()).await;
        let la = a.wait_for_leg(1, LEG_WAIT).await.unwrap();
        la.wait_confirmed(LEG_WAIT).await.unwrap();
        wait_hearing(
            "screened volunteer",
            || la.rtp_packets(),
            3100.0,
            la.invite_at,
            5,
            Duration::from_secs(2),
        )
        .await;
        let confirming = prompt_names(&c.call.rtp_packets());
        assert_eq!(
            confirming.last(),
            Some(&"station_health"),
            "caller hears {confirming:?}"
        );
        la.send_dtmf_rfc4733('1', 100).await.unwrap();
        assert_audio_both_ways(&c, &la).await;
        assert_eq!(
            summary(&attempts(&d, &c.call_id).await),
            [att("alice", "answered", Some(200))]
        );
        c.call.hangup().await.unwrap();
        d.ended_record(&c.call_id, Duration::from_secs(3)).await;
    })
    .await;
}
