//! `hotline selftest` run as the admin would (the binary, as a child process) against
//! a daemon on loopback: it passes when every station has someone reachable, fails
//! naming the station that has nobody, and rings nobody. The volunteer's "phone" is a
//! UDP socket this test holds, which must never see an INVITE.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::FixedOffset;
use common::daemon::*;
use tokio::net::UdpSocket;
use tokio::process::Command;
use tokio::sync::Mutex;

/// RTP ports for this test binary's daemons.
const PORTS: (u16, u16) = (52600, 52799);
/// One daemon at a time: the machine is small and shared.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// A roster with volunteer `ann` at `phone`, always on duty at `stations`, and `bo`,
/// whose phone is a number (no `[trunk]`: unreachable), always on duty at `bo_at`.
fn set_roster(d: &Daemon, phone: &str, stations: &[&str], bo_at: &[&str]) {
    let mut s = format!(
        "timezone = \"Asia/Shanghai\"\n\n[[volunteer]]\nid = \"ann\"\nname = \"Ann Li\"\n\
         phone = \"{phone}\"\n\n[[volunteer]]\nid = \"bo\"\nname = \"Bo\"\n\
         phone = \"13800138000\"\n"
    );
    let shifts = stations
        .iter()
        .map(|st| ("ann", st))
        .chain(bo_at.iter().map(|st| ("bo", st)));
    for (who, st) in shifts {
        s.push_str(&format!(
            "\n[[shift]]\nstation = \"{st}\"\nvolunteer = \"{who}\"\ndays = \"daily\"\n\
             start = \"00:00\"\nend = \"24:00\"\n"
        ));
    }
    std::fs::write(d.tmp.path().join("roster.toml"), s).unwrap();
    d.server().reload_roster();
    assert_eq!(d.server().roster().current().volunteers.len(), 2);
}

/// The admin's config file for this daemon: its SIP address and roster.
fn config_file(d: &Daemon, extra: &str) -> PathBuf {
    let text = format!(
        "[sip]\nlisten = \"{}\"\n[roster]\nfile = \"{}\"\n{extra}",
        d.addr,
        d.tmp.path().join("roster.toml").display()
    );
    let path = d.tmp.path().join("selftest.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `hotline selftest ARGS --config FILE`: (exit code, stdout, stderr).
async fn selftest(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .arg("selftest")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A volunteer's phone that must stay silent: a bound UDP socket.
async fn silent_phone() -> (UdpSocket, String) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("sip:ann@{}", sock.local_addr().unwrap());
    (sock, uri)
}

/// Nothing at all reaches `sock` within a short while (no INVITE was sent).
async fn assert_never_rung(sock: &UdpSocket) {
    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await;
    if let Ok(Ok((n, from))) = got {
        panic!(
            "the volunteer's phone was sent {n} bytes from {from}: {}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_all_passes_when_every_station_has_someone_and_rings_nobody() {
    let _serial = SERIAL.lock().await;
    let d = Daemon::start(PORTS, |_| {}).await;
    let (phone, uri) = silent_phone().await;
    let all: Vec<&str> = STATIONS.iter().map(|(_, id)| *id).collect();
    set_roster(&d, &uri, &all, &[]);
    let (code, out, err) = selftest(&config_file(&d, ""), &["--all"]).await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), STATIONS.len(), "{out}");
    for ((key, id), line) in STATIONS.iter().zip(&lines) {
        let want = format!(
            "OK   key {key} {id}: menu answered: yes; first volunteer: Ann Li (ann); trunk: none"
        );
        assert_eq!(*line, want);
    }
    assert_never_rung(&phone).await;

    // Recorded, with the station and key, but not counted as a resident's call.
    let store = d.server().store();
    store.flush(Duration::from_secs(5)).await.unwrap();
    let rows = store.recent_calls(20).await.unwrap();
    assert_eq!(rows.len(), STATIONS.len());
    for r in &rows {
        assert_eq!(r.outcome.as_deref(), Some("selftest"), "{r:?}");
        assert!(r.ended_at.is_some());
        let key = STATIONS
            .iter()
            .find(|(_, id)| Some(*id) == r.station.as_deref());
        assert_eq!(r.keys, key.expect("station recorded").0.to_string());
    }
    let offset = FixedOffset::east_opt(8 * 3600).unwrap();
    let report = store.report(None, None, offset).await.unwrap();
    assert_eq!(report.totals.calls, 0, "{report:?}");
    let (_, metrics) = d.admin_get("/metrics", None).await;
    assert!(
        metrics.contains("hotline_selftest_calls_total 7"),
        "{metrics}"
    );
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("hotline_calls_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_fails_naming_the_station_with_nobody_reachable() {
    let _serial = SERIAL.lock().await;
    let d = Daemon::start(PORTS, |_| {}).await;
    let (phone, uri) = silent_phone().await;
    // Culture's only volunteer cannot be called, and the desk (every station's
    // second resort) has nobody: both fail; the others reach ann.
    let others: Vec<&str> = STATIONS
        .iter()
        .map(|(_, id)| *id)
        .filter(|id| !["culture", "desk"].contains(id))
        .collect();
    set_roster(&d, &uri, &others, &["culture"]);
    let config = config_file(&d, "");
    let (code, out, err) = selftest(&config, &[]).await;
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(
        failed,
        [
            "FAIL key 5 culture: menu answered: yes; NOBODY reachable; trunk: none",
            "FAIL key 0 desk: menu answered: yes; NOBODY reachable; trunk: none"
        ],
        "{out}"
    );
    assert_eq!(out.lines().filter(|l| l.starts_with("OK")).count(), 5);
    assert!(
        err.contains(
            "selftest: 2 of 7 stations failed: culture (NOBODY reachable), desk (NOBODY reachable)"
        ),
        "{err}"
    );

    // One station alone.
    let (code, out, _) = selftest(&config, &["--station", "health"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, _, err) = selftest(&config, &["--station", "nosuch"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("unknown station \"nosuch\""), "{err}");
    assert_never_rung(&phone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_a_self_test_without_it_is_refused_and_rings_nobody() {
    let _serial = SERIAL.lock().await;
    let d = Daemon::start(PORTS, |cfg| {
        cfg.selftest.token = Some("s3cret".into());
    })
    .await;
    let (phone, uri) = silent_phone().await;
    set_roster(&d, &uri, &["health"], &[]);
    let (code, out, _) = selftest(&config_file(&d, ""), &["--station", "health"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("FAIL key 2 health: menu answered: no (the daemon answered 403"),
        "{out}"
    );
    let with_token = config_file(&d, "[selftest]\ntoken = \"s3cret\"\n");
    let (code, out, err) = selftest(&with_token, &["--station", "health"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_never_rung(&phone).await;
}
