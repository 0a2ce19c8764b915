//! SIP protocol behaviour of the daemon, end to end over loopback: INVITE server
//! transactions (2xx retransmission, Timer H, merged duplicates, CANCEL), offer/answer
//! variants, re-INVITE hold, out-of-dialog requests and their status codes, the TCP
//! listener, and graceful shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::daemon::*;
use common::phone::*;
use tokio::time::{sleep, Instant};

const PORTS: (u16, u16) = (42000, 42999);
const LIMIT: Duration = Duration::from_secs(30);

/// A minimal out-of-dialog (or, with `to_tag`, fake in-dialog) request, over UDP.
fn raw_request(phone: &Phone, method: &str, call_id: &str, to_tag: Option<&str>) -> Vec<u8> {
    let server = phone.server();
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:6289110@{server} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:tester@127.0.0.1>;tag={from_tag}\r\n\
         To: <sip:6289110@{server}>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:tester@{local}>\r\n\
         Content-Length: 0\r\n\r\n",
        local = phone.local_addr(),
        branch = new_branch(),
        from_tag = random_token(8),
    )
    .into_bytes()
}

/// Send raw bytes and return the first final response that comes back (within 2 s).
async fn final_response(phone: &mut Phone, bytes: &[u8]) -> Option<SipMessage> {
    phone.send_raw(bytes).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let got = phone.recv_raw(left).await?;
        if let Ok(m) = SipMessage::parse(&got) {
            if m.status().is_some_and(|s| s >= 200) {
                return Some(m);
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_200_is_retransmitted_per_timer_g() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |c| c.sip.t1_ms = 500).await;
        let phone = d.phone(Transport::Udp).await;
        let opts = CallOptions {
            never_ack: true,
            ..CallOptions::default()
        };
        let call = phone.call(opts).await.unwrap();
        assert_eq!(call.status, 200);
        // RFC 3261 13.3.1.4: resend at T1, 2*T1, 4*T1... after the first: 0.5, 1.5, 3.5 s.
        sleep(Duration::from_millis(4000)).await;
        let re = call.ok_retransmissions();
        let ms: Vec<u128> = re.iter().map(|d| d.as_millis()).collect();
        assert!(ms.len() >= 3, "retransmissions at {ms:?} ms");
        assert!((400..800).contains(&ms[0]), "{ms:?}");
        assert!((1300..1900).contains(&ms[1]), "{ms:?}");
        assert!((3200..3900).contains(&ms[2]), "{ms:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ack_ends_call_after_timer_h_as_failed() {
    bounded(LIMIT, async {
        // Timer H = 64 * T1 = 3.2 s.
        let d = Daemon::start(PORTS, |c| c.sip.t1_ms = 50).await;
        let phone = d.phone(Transport::Udp).await;
        let opts = CallOptions {
            never_ack: true,
            ..CallOptions::default()
        };
        let call = phone.call(opts).await.unwrap();
        assert_eq!(call.status, 200);
        let call_id = call.dialog.call_id.clone();
        let row = d.ended_record(&call_id, Duration::from_secs(8)).await;
        let after = call.final_at.elapsed();
        assert_eq!(row.outcome.as_deref(), Some("failed"));
        assert_eq!(row.hangup_by.as_deref(), Some("system"));
        assert!(
            after >= Duration::from_millis(3000) && after < Duration::from_millis(6000),
            "gave up {after:?} after the 200"
        );
        // Retransmissions stopped when the transaction gave up.
        let n = call.ok_retransmissions().len();
        assert!(n >= 5, "only {n} retransmissions with T1 = 50 ms");
        sleep(Duration::from_millis(600)).await;
        assert_eq!(call.ok_retransmissions().len(), n, "200 still resent");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_invite_makes_one_dialog_and_one_record() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        let phone = d.phone(Transport::Udp).await;
        let call_id = format!("dup-{}@127.0.0.1", random_token(8));
        let opts = CallOptions {
            duplicate_invite: true,
            call_id: Some(call_id.clone()),
            ..CallOptions::default()
        };
        let call = phone.call(opts).await.unwrap();
        assert_eq!(call.status, 200);
        sleep(Duration::from_millis(300)).await;
        let to_tags: std::collections::BTreeSet<Option<String>> = phone
            .received()
            .iter()
            .filter_map(|r| r.msg.clone())
            .filter(|m| m.status() == Some(200) && m.call_id() == Some(call_id.as_str()))
            .map(|m| m.tag("To"))
            .collect();
        assert_eq!(to_tags.len(), 1, "200s with different To tags: {to_tags:?}");
        assert_eq!(d.server().active_calls(), 1);
        assert_eq!(call.hangup().await.unwrap(), 200);
        d.ended_record(&call_id, Duration::from_secs(3)).await;
        let rows = d.all_records().await;
        assert_eq!(rows.iter().filter(|r| r.call_id == call_id).count(), 1);
        assert_eq!(rows.len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_right_after_invite_ends_abandoned() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        let phone = d.phone(Transport::Udp).await;
        let call_id = format!("cancel-{}@127.0.0.1", random_token(8));
        let opts = CallOptions {
            call_id: Some(call_id.clone()),
            ..CallOptions::default()
        };
        let out = phone.invite_then_cancel(opts).await.unwrap();
        // The daemon answers at once, so the CANCEL may cross the 200.
        match out.invite_status {
            Some(487) => assert_eq!(out.cancel_status, Some(200), "{out:?}"),
            Some(200) => assert_eq!(out.bye_status, Some(200), "{out:?}"),
            _ => panic!("unexpected outcome {out:?}"),
        }
        let row = d.ended_record(&call_id, Duration::from_secs(3)).await;
        assert_eq!(row.outcome.as_deref(), Some("abandoned"), "{out:?}");
        assert_eq!(row.hangup_by.as_deref(), Some("caller"), "{out:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_without_sdp_gets_offer_in_200_and_answer_in_ack_works() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        let phone = d.phone(Transport::Udp).await;
        let call = phone.call(CallOptions::no_sdp()).await.unwrap();
        assert_eq!(call.status, 200);
        let offer = call
            .remote_sdp
            .as_ref()
            .expect("the 200 must carry an offer");
        assert!(offer.payload_types.contains(&0) && offer.payload_types.contains(&8));
        assert!(offer.telephone_event_pt.is_some());
        assert!(offer.rtp_addr.is_some_and(|a| a.ip().is_loopback()));
        assert_eq!(call.ack.header("Content-Type"), Some("application/sdp"));
        // Media flows to the address in our answer, and keys by INFO work.
        wait_for_prompt(&call, "menu", Duration::from_secs(3)).await;
        assert_eq!(call.send_dtmf_info('3').await.unwrap(), 200);
        call.wait_for_bye(Duration::from_secs(5)).await.unwrap();
        let row = d
            .ended_record(&call.dialog.call_id, Duration::from_secs(3))
            .await;
        assert_eq!(row.station.as_deref(), Some("counseling"));
        assert_eq!(row.outcome.as_deref(), Some("no_answer"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinvite_hold_gets_recvonly_and_call_continues() {
    bounded(LIMIT, async {
        let len = PromptLengths {
            menu_ms: 3000,
            ..PromptLengths::default()
        };
        let d = Daemon::start_with(PORTS, &len, |_| {}).await;
        let phone = d.phone(Transport::Udp).await;
        let call = phone.call(CallOptions::default()).await.unwrap();
        wait_for_prompt(&call, "menu", Duration::from_secs(3)).await;
        let out = call.reinvite_hold().await.unwrap();
        assert_eq!(out.status, 200);
        assert_eq!(out.remote_sdp.as_ref().unwrap().direction, "recvonly");
        // On hold the daemon stops sending audio (it may not send to a sendonly peer).
        sleep(Duration::from_millis(100)).await;
        let n = call.rtp_packets().len();
        sleep(Duration::from_millis(300)).await;
        assert!(
            call.rtp_packets().len() <= n + 1,
            "RTP kept flowing on hold"
        );
        assert_eq!(call.send_dtmf_info('4').await.unwrap(), 200);
        call.wait_for_bye(Duration::from_secs(5)).await.unwrap();
        let row = d
            .ended_record(&call.dialog.call_id, Duration::from_secs(3))
            .await;
        assert_eq!(row.station.as_deref(), Some("assistance"));
        assert_eq!(row.keys, "4");
        assert_eq!(row.outcome.as_deref(), Some("no_answer"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_gets_200_over_udp_and_tcp() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        for t in [Transport::Udp, Transport::Tcp] {
            assert_eq!(d.phone(t).await.options().await.unwrap(), 200, "{t:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_to_another_number_gets_404() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        let phone = d.phone(Transport::Udp).await;
        let opts = CallOptions {
            to_user: "5550100".into(),
            ..CallOptions::default()
        };
        let call = phone.call(opts).await.unwrap();
        assert_eq!(call.status, 404);
        assert_eq!(d.server().active_calls(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g729_only_offer_gets_488() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        let phone = d.phone(Transport::Udp).await;
        let call = phone.call(CallOptions::g729_only()).await.unwrap();
        assert_eq!(call.status, 488);
        assert_eq!(d.server().active_calls(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bye_for_unknown_dialog_gets_481() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        let mut phone = d.phone(Transport::Udp).await;
        let bye = raw_request(&phone, "BYE", "no-such-call@127.0.0.1", Some("nosuchtag"));
        let resp = final_response(&mut phone, &bye).await.expect("no answer");
        assert_eq!(resp.status(), Some(481));
        assert_eq!(resp.call_id(), Some("no-such-call@127.0.0.1"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_method_gets_501_over_udp() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        let mut phone = d.phone(Transport::Udp).await;
        let foo = raw_request(&phone, "FOO", "foo-1@127.0.0.1", None);
        let resp = final_response(&mut phone, &foo).await.expect("no answer");
        assert_eq!(resp.status(), Some(501));
        assert_eq!(resp.cseq(), Some((1, "FOO".into())));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_gets_405_with_allow() {
    bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |_| {}).await;
        let mut phone = d.phone(Transport::Udp).await;
        let reg = raw_request(&phone, "REGISTER", "reg-1@127.0.0.1", None);
        let resp = final_response(&mut phone, &reg).await.expect("no answer");
        assert_eq!(resp.status(), Some(405));
        let allow = resp.header("Allow").unwrap_or_default().to_string();
        assert!(
            allow.contains("INVITE") && !allow.contains("REGISTER"),
            "{allow}"
        );
    })
    .await;
}

/// `Server::start` returning means the daemon is answering calls, over TCP too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listener_accepts_as_soon_as_start_returns() {
    bounded(LIMIT, async {
        let mut refused = 0;
        for _ in 0..10 {
            let d = Daemon::start(PORTS, |_| {}).await;
            if tokio::net::TcpStream::connect(d.addr).await.is_err() {
                refused += 1;
            }
            d.server().shutdown(Duration::from_millis(200)).await;
        }
        assert_eq!(
            refused, 0,
            "TCP connect refused right after start, {refused}/10 times"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_calls_lets_the_call_finish_and_flushes() {
    bounded(LIMIT, async {
        let len = PromptLengths {
            menu_ms: 2000,
            ..PromptLengths::default()
        };
        let d = Arc::new(Daemon::start_with(PORTS, &len, |_| {}).await);
        let phone = d.phone(Transport::Udp).await;
        let call = phone.call(CallOptions::default()).await.unwrap();
        let call_id = call.dialog.call_id.clone();
        wait_for_prompt(&call, "menu", Duration::from_secs(3)).await;

        let d2 = d.clone();
        let shutdown = tokio::spawn(async move {
            d2.server().shutdown(Duration::from_secs(5)).await;
            Instant::now()
        });
        sleep(Duration::from_millis(100)).await;
        assert!(
            !shutdown.is_finished(),
            "shutdown did not wait for the call"
        );

        // A new call during the drain is refused.
        let other = d.phone(Transport::Udp).await;
        let refused = other.call(CallOptions::default()).await.unwrap();
        assert_eq!(refused.status, 503);

        // The call in progress goes on to its natural end.
        call.send_dtmf_rfc4733('1', 60).await.unwrap();
        call.wait_for_bye(Duration::from_secs(4)).await.unwrap();
        let bye_at = Instant::now();
        let done_at = shutdown.await.unwrap();
        assert!(
            done_at.duration_since(bye_at) < Duration::from_secs(2),
            "shutdown returned {:?} after the call ended",
            done_at.duration_since(bye_at)
        );
        let names = prompt_names(&call.rtp_packets());
        assert!(
            names.ends_with(&["station_property", "no_volunteer"]),
            "{names:?}"
        );
        // Flushed by shutdown itself: read without another flush.
        let row = d.server().store().call(&call_id).await.unwrap().unwrap();
        assert!(row.ended_at.is_some(), "{row:?}");
        assert_eq!(row.outcome.as_deref(), Some("no_answer"));
        assert_eq!(row.station.as_deref(), Some("property"));
        assert_eq!(row.keys, "1");
    })
    .await;
}
