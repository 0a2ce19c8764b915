//! End-to-end: the shorter way to a person for a caller who presses nothing
//! (`[menu] silent_tries`), over real loopback sockets.
//!
//! The menu state machine's unit tests compute the same time in virtual time from
//! the shipped prompts' lengths; here it is measured once on a real call.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::daemon::*;
use common::phone::*;
use common::volunteer::{Behaviour, VolunteerPhone};
use hotline::config::Config;
use hotline::media::prompts::load_wav;

/// RTP ports for this test binary (the others use their own ranges).
const PORTS: (u16, u16) = (51000, 51199);

fn shipped_prompts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts")
}

/// The daemon's menu exactly as shipped (timeout, tries, silent tries), whatever
/// the test config's fast menu says.
fn shipped_menu(c: &mut Config) {
    let shipped = Config::embedded_default().menu;
    c.menu.timeout_s = shipped.timeout_s;
    c.menu.max_tries = shipped.max_tries;
    c.menu.silent_tries = shipped.silent_tries;
}

/// A desk volunteer always on duty, whose phone rings and is never answered.
fn desk_roster(d: &Daemon, desk: &VolunteerPhone) {
    let roster = format!(
        "timezone = \"Asia/Shanghai\"\n\n[[volunteer]]\nid = \"desk1\"\nname = \"desk1\"\n\
         phone = \"{}\"\n\n[[shift]]\nstation = \"desk\"\nvolunteer = \"desk1\"\n\
         days = \"daily\"\nstart = \"00:00\"\nend = \"24:00\"\n",
        desk.uri()
    );
    std::fs::write(d.tmp.path().join("roster.toml"), roster).unwrap();
    d.server().reload_roster();
    assert_eq!(d.server().roster().current().volunteers.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_caller_hears_the_menu_once_then_goes_to_the_desk() {
    bounded(Duration::from_secs(30), async {
        let d = Daemon::start(PORTS, |c| c.menu.silent_tries = 1).await;
        let phone = d.phone(Transport::Udp).await;
        let call = phone.call(CallOptions::default()).await.unwrap();
        let call_id = call.dialog.call_id.clone();
        // welcome 0.4 + menu 0.6 + timeout 1 + desk 0.4 + no_volunteer 0.4 = 2.8 s.
        call.wait_for_bye(Duration::from_secs(8)).await.unwrap();
        assert_eq!(
            prompt_names(&call.rtp_packets()),
            ["welcome", "menu", "station_desk", "no_volunteer"]
        );
        let row = d.ended_record(&call_id, Duration::from_secs(3)).await;
        assert_eq!(row.keys, "");
        assert_eq!(row.station.as_deref(), Some("desk"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_keeps_every_try_then_the_desk() {
    bounded(Duration::from_secs(30), async {
        // max_tries 2 (test config), silent_tries 1: the wrong key is one try, the
        // silence after the short menu the second.
        let d = Daemon::start(PORTS, |c| c.menu.silent_tries = 1).await;
        let phone = d.phone(Transport::Udp).await;
        let call = phone.call(CallOptions::default()).await.unwrap();
        let call_id = call.dialog.call_id.clone();
        wait_for_prompt(&call, "menu", Duration::from_secs(3)).await;
        call.send_dtmf_rfc4733('9', 60).await.unwrap();
        call.wait_for_bye(Duration::from_secs(8)).await.unwrap();
        assert_eq!(
            prompt_names(&call.rtp_packets()),
            [
                "welcome",
                "menu",
                "invalid",
                "menu_short",
                "station_desk",
                "no_volunteer"
            ]
        );
        let row = d.ended_record(&call_id, Duration::from_secs(3)).await;
        assert_eq!(row.keys, "9");
        assert_eq!(row.station.as_deref(), Some("desk"));
    })
    .await;
}

/// Issue 11: with the shipped prompts and the shipped menu settings, a caller who
/// presses nothing has the duty desk ringing within 40 s of the answer. Measured on
/// a real call (about 33 s of real time): 200 OK at the caller to the INVITE at the
/// desk's phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_caller_rings_the_desk_within_40_s_with_the_shipped_prompts() {
    bounded(Duration::from_secs(90), async {
        let zh = shipped_prompts().join("zh");
        let length = |name: &str| {
            load_wav(&zh.join(format!("{name}.wav")))
                .unwrap()
                .duration()
        };
        let shipped = Config::embedded_default().menu;
        let expected = length("welcome") + length("menu") + Duration::from_secs(shipped.timeout_s);

        let d = Daemon::start(PORTS, |c| {
            c.menu.prompts_dir = shipped_prompts();
            shipped_menu(c);
        })
        .await;
        let desk = VolunteerPhone::new("desk1", Behaviour::NoAnswer)
            .await
            .unwrap();
        desk_roster(&d, &desk);
        let phone = d.phone(Transport::Udp).await;
        let call = phone.call(CallOptions::default()).await.unwrap();
        assert_eq!(call.status, 200);
        let leg = desk.wait_for_leg(1, Duration::from_secs(60)).await.unwrap();
        let to_desk = leg.invite_at.duration_since(call.final_at);
        eprintln!(
            "silent caller: desk rung {to_desk:?} after the answer \
             (welcome + menu + timeout_s = {expected:?})"
        );
        assert!(to_desk <= Duration::from_secs(40), "{to_desk:?}");
        // It is the menu's own timing, not something faster or slower.
        assert!(
            to_desk + Duration::from_millis(300) >= expected,
            "desk rung after {to_desk:?}, before the menu could have ended ({expected:?})"
        );
        assert!(
            to_desk <= expected + Duration::from_secs(2),
            "desk rung after {to_desk:?}, {expected:?} expected"
        );
        assert_eq!(call.hangup().await.unwrap(), 200);
    })
    .await;
}
