//! `hotline phone`, as an admin runs it: the binary as a volunteer's phone
//! (`--listen`) in the roster, and the binary as a caller (`--dial --keys 2`),
//! both child processes of this test, against the daemon on loopback. The caller's
//! report must name the greeting, the menu, the station's prompt and the
//! volunteer's tone, in that order.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::daemon::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::timeout;

const PORTS: (u16, u16) = (50600, 50699);
const VOLUNTEER_TONE: &str = "1000";

fn phone() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hotline"));
    c.env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

/// The volunteer phone on a port the system picks; its log lines, and its
/// `sip:` URI once it says where it listens.
async fn volunteer() -> (Child, mpsc::UnboundedReceiver<String>, String) {
    let mut child = phone()
        .args(["phone", "--listen", "127.0.0.1:0", "--answer-after", "1"])
        .args(["--tone", VOLUNTEER_TONE, "--calls", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start hotline phone --listen");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, mut lines) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut r = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = r.next_line().await {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let (log_tx, log) = mpsc::unbounded_channel();
    let uri = timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.recv().await {
            let _ = log_tx.send(line.clone());
            if let Some(at) = line.find("phone = \"sip:") {
                let rest = &line[at + 9..];
                return rest[..rest.find('"').unwrap()].to_string();
            }
        }
        panic!("hotline phone --listen exited without saying where it listens");
    })
    .await
    .expect("hotline phone --listen did not start within 20 s");
    tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            if log_tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, log, uri)
}

fn roster(uri: &str) -> String {
    format!(
        "timezone = \"Asia/Shanghai\"\n\n[[volunteer]]\nid = \"li\"\nname = \"li\"\n\
         phone = \"{uri}\"\n\n[[shift]]\nstation = \"health\"\nvolunteer = \"li\"\n\
         days = \"daily\"\nstart = \"00:00\"\nend = \"24:00\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_phone_hears_the_menu_the_station_and_the_volunteers_tone() {
    bounded(Duration::from_secs(90), async {
        let d = Daemon::start(PORTS, |c| c.forward.ring_timeout_s = 10).await;
        let (mut vol, mut vol_log, uri) = volunteer().await;
        std::fs::write(d.tmp.path().join("roster.toml"), roster(&uri)).unwrap();
        d.server().reload_roster();

        let prompts = d.tmp.path().join("prompts").join("zh");
        let out = timeout(
            Duration::from_secs(60),
            phone()
                .args(["phone", "--dial", &format!("sip:6289110@{}", d.addr)])
                .args(["--keys", "2", "--hold", "4", "--prompts"])
                .arg(&prompts)
                .output(),
        )
        .await
        .expect("hotline phone --dial did not finish within 60 s")
        .expect("cannot run hotline phone --dial");
        let report = String::from_utf8_lossy(&out.stdout).to_string();
        let log = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "caller failed:\n{report}\n{log}");

        let at = |what: &str| {
            report
                .find(what)
                .unwrap_or_else(|| panic!("report lacks {what:?}:\n{report}\n{log}"))
        };
        let order = [
            at("prompt welcome"),
            at("prompt menu"),
            at("pressed key 2"),
            at("prompt station_health"),
            at(&format!("tone {VOLUNTEER_TONE} Hz")),
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]), "order:\n{report}");
        assert!(report.contains("answered after"), "{report}");

        // A number the hotline does not serve: refused, said so, exit status 1.
        let out = timeout(
            Duration::from_secs(30),
            phone()
                .args(["phone", "--dial", &format!("sip:999@{}", d.addr)])
                .args(["--keys", "2", "--prompts"])
                .arg(&prompts)
                .output(),
        )
        .await
        .expect("hotline phone --dial to a wrong number did not finish within 30 s")
        .expect("cannot run hotline phone --dial");
        let report = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{report}");
        assert!(report.contains("refused with SIP 404"), "{report}");

        // The volunteer phone took its one call, logged it, and exits by itself.
        let status = timeout(Duration::from_secs(15), vol.wait())
            .await
            .expect("volunteer phone did not exit after its call")
            .unwrap();
        let mut lines = Vec::new();
        while let Ok(l) = vol_log.try_recv() {
            lines.push(l);
        }
        let lines = lines.join("\n");
        assert!(status.success(), "volunteer phone failed:\n{lines}");
        assert!(lines.contains("answered"), "{lines}");
        assert!(lines.contains("hearing silence"), "{lines}");
        assert!(lines.contains("call ended after"), "{lines}");
    })
    .await;
}
