//! The admin listener over loopback (issue 9): `/metrics` after real calls parses
//! as Prometheus text and counts what happened, `/readyz` follows the call
//! records database, `hotline status` shows a bridged call, the token is enforced.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::daemon::*;
use common::phone::*;
use common::volunteer::{Behaviour, VolunteerPhone};
use hotline::store::{CallEvent, NewCall};
use sqlx::Connection;
use tokio::sync::Mutex;
use tokio::time::{sleep, Instant};

const PORTS: (u16, u16) = (46000, 46999);
static SERIAL: Mutex<()> = Mutex::const_new(());
const LIMIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "s3cret-token";
const CALLER: &str = "13912345678";

fn roster(volunteer_uri: Option<&str>) -> String {
    let mut s = String::from("timezone = \"Asia/Shanghai\"\n");
    if let Some(uri) = volunteer_uri {
        s.push_str(&format!(
            "\n[[volunteer]]\nid = \"alice\"\nname = \"Alice\"\nphone = \"{uri}\"\n\
             \n[[shift]]\nstation = \"health\"\nvolunteer = \"alice\"\ndays = \"daily\"\n\
             start = \"00:00\"\nend = \"24:00\"\n"
        ));
    }
    s
}

/// A config file naming the daemon's admin listener, for `hotline status`.
fn status_config(d: &Daemon, token: Option<&str>) -> std::path::PathBuf {
    let addr = d.server().admin_addr().unwrap();
    let mut text = format!("[admin]\nlisten = \"{addr}\"\n");
    if let Some(t) = token {
        text.push_str(&format!("token = \"{t}\"\n"));
    }
    let path = d.tmp.path().join("status.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `hotline status` run as the admin would: (exit code, stdout, stderr).
fn hotline_status(config: &std::path::Path, json: bool) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotline"));
    cmd.args(["status", "--config"]).arg(config);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of the sample `series` (name and labels exactly as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

async fn dial(d: &Daemon, key: Option<char>) -> (Phone, Call, String) {
    let phone = d.phone(Transport::Udp).await;
    let call_id = format!("{}@127.0.0.1", random_token(12));
    let call = phone
        .call(CallOptions {
            call_id: Some(call_id.clone()),
            from_user: CALLER.into(),
            ..CallOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(call.status, 200);
    wait_for_prompt(&call, "menu", Duration::from_secs(3)).await;
    if let Some(k) = key {
        call.send_dtmf_rfc4733(k, 100).await.unwrap();
    }
    (phone, call, call_id)
}

/// Polls `hotline status --json` (a blocking child process: off the runtime)
/// until a call shows `state`, or 10 s.
async fn status_showing(config: &std::path::Path, state: &str) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cfg = config.to_path_buf();
        let (code, json, err) = tokio::task::spawn_blocking(move || hotline_status(&cfg, true))
            .await
            .unwrap();
        assert_eq!(code, 0, "hotline status --json failed: {err}");
        if json.contains(&format!("\"state\":\"{state}\"")) || Instant::now() >= deadline {
            let cfg = config.to_path_buf();
            let (code, table, err) =
                tokio::task::spawn_blocking(move || hotline_status(&cfg, false))
                    .await
                    .unwrap();
            assert_eq!(code, 0, "hotline status failed: {err}");
            return (json, table);
        }
        sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_calls_made_and_status_shows_the_bridged_call() {
    let _g = SERIAL.lock().await;
    common::daemon::bounded(LIMIT, async {
        let alice = VolunteerPhone::new(
            "alice",
            Behaviour::Answer {
                after: Duration::from_millis(200),
            },
        )
        .await
        .unwrap();
        let uri = alice.uri();
        let d = Daemon::start(PORTS, |cfg| {
            cfg.admin.token = Some(TOKEN.into());
            cfg.forward.ring_timeout_s = 5;
            std::fs::write(&cfg.roster.file, roster(Some(&uri))).unwrap();
        })
        .await;
        let config = status_config(&d, Some(TOKEN));

        // A call put through to alice, and shown as bridged while it lasts.
        let (_p1, call, id1) = dial(&d, Some('2')).await;
        let leg = alice.wait_for_leg(1, Duration::from_secs(5)).await.unwrap();
        leg.wait_confirmed(Duration::from_secs(5)).await.unwrap();
        let (json, table) = status_showing(&config, "bridged").await;
        assert!(json.contains(&format!("\"call_id\":\"{id1}\"")), "{json}");
        assert!(json.contains("\"caller\":\"*******5678\""), "{json}");
        assert!(!json.contains(CALLER), "caller unmasked: {json}");
        assert!(json.contains("\"volunteer\":\"alice\""), "{json}");
        assert!(json.contains("\"station\":\"health\""), "{json}");
        assert!(
            table.contains("bridged") && table.contains("*******5678"),
            "{table}"
        );
        assert!(table.contains("1 active calls"), "{table}");
        assert_eq!(call.hangup().await.unwrap(), 200);
        d.ended_record(&id1, Duration::from_secs(5)).await;

        // A caller who hangs up in the menu.
        let (_p2, call, id2) = dial(&d, None).await;
        assert_eq!(call.hangup().await.unwrap(), 200);
        d.ended_record(&id2, Duration::from_secs(5)).await;

        // The counters match the calls' records.
        let (code, text) = d.admin_get("/metrics", Some(TOKEN)).await;
        assert_eq!(code, 200, "{text}");
        let mut outcomes: BTreeMap<String, f64> = BTreeMap::new();
        for row in d.all_records().await {
            *outcomes.entry(row.outcome.unwrap_or_default()).or_default() += 1.0;
        }
        assert_eq!(outcomes.values().sum::<f64>(), 2.0, "{outcomes:?}");
        for outcome in ["connected", "voicemail", "no_answer", "abandoned", "failed"] {
            let series = format!("hotline_calls_total{{outcome=\"{outcome}\"}}");
            let want = outcomes.get(outcome).copied().unwrap_or(0.0);
            assert_eq!(sample(&text, &series), Some(want), "{series}\n{text}");
        }
        let by_station = "hotline_calls_by_station_total{station=\"health\",outcome=\"connected\"}";
        assert_eq!(sample(&text, by_station), Some(1.0), "{text}");
        let answered = "hotline_hunt_attempts_total{result=\"answered\"}";
        assert_eq!(sample(&text, answered), Some(1.0), "{text}");
        assert_eq!(sample(&text, "hotline_calls_active"), Some(0.0), "{text}");
        assert_eq!(
            sample(&text, "hotline_time_to_person_seconds_count"),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "hotline_post_dial_delay_seconds_count"),
            Some(1.0),
            "{text}"
        );
        let invites = sample(&text, "hotline_sip_requests_total{method=\"INVITE\"}");
        assert!(invites.is_some_and(|n| n >= 2.0), "{text}");
        let ok = sample(&text, "hotline_sip_responses_total{code_class=\"2xx\"}");
        assert!(ok.is_some_and(|n| n >= 4.0), "{text}");
        let on_duty = "hotline_volunteers_on_duty{station=\"health\"}";
        assert_eq!(sample(&text, on_duty), Some(1.0), "{text}");
        assert!(!text.contains(CALLER) && !text.contains(&id1), "{text}");

        // promtool (Debian's prometheus package) accepts it.
        let file = d.tmp.path().join("metrics.txt");
        std::fs::write(&file, &text).unwrap();
        let out = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(&file).unwrap())
            .output()
            .expect("promtool not installed (apt install prometheus)");
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_required_everywhere_but_livez() {
    let _g = SERIAL.lock().await;
    common::daemon::bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |cfg| {
            cfg.admin.token = Some(TOKEN.into());
            std::fs::write(&cfg.roster.file, roster(None)).unwrap();
        })
        .await;
        for path in ["/metrics", "/readyz", "/status"] {
            assert_eq!(
                d.admin_get(path, None).await.0,
                401,
                "{path} without a token"
            );
            assert_eq!(d.admin_get(path, Some("wrong")).await.0, 401, "{path}");
            assert_eq!(d.admin_get(path, Some(TOKEN)).await.0, 200, "{path}");
        }
        assert_eq!(d.admin_get("/livez", None).await.0, 200);
        // hotline status without the token: refused, named as such.
        let (code, _, err) = hotline_status(&status_config(&d, None), false);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("401"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_the_database_is_locked_and_200_after() {
    let _g = SERIAL.lock().await;
    common::daemon::bounded(LIMIT, async {
        let d = Daemon::start(PORTS, |cfg| {
            cfg.admin.ready_queue_limit = 0;
            std::fs::write(&cfg.roster.file, roster(None)).unwrap();
        })
        .await;
        let (code, body) = d.admin_get("/readyz", None).await;
        assert_eq!(
            (code, body.contains("\"ready\":true")),
            (200, true),
            "{body}"
        );

        // Another process's write lock on the SQLite file: our writer must wait.
        let url = format!("sqlite://{}/hotline.db", d.tmp.path().display());
        let mut lock = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut lock)
            .await
            .unwrap();
        d.server().store().record(CallEvent::Started(NewCall {
            call_id: "locked@test".into(),
            caller: "100".into(),
            dialed: "6289110".into(),
            started_at: chrono::Utc::now(),
        }));
        sleep(Duration::from_secs(1)).await;
        let (code, body) = d.admin_get("/readyz", None).await;
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("call records database"), "{body}");
        let (_, metrics) = d.admin_get("/metrics", None).await;
        assert_eq!(
            sample(&metrics, "hotline_store_queue_depth"),
            Some(1.0),
            "{metrics}"
        );

        sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
        drop(lock);
        d.server()
            .store()
            .flush(Duration::from_secs(30))
            .await
            .unwrap();
        let (code, body) = d.admin_get("/readyz", None).await;
        assert_eq!(code, 200, "{body}");
        assert!(d.record("locked@test").await.is_some());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_daemon_that_is_not_running_says_so_and_exits_2() {
    let tmp = tempfile::TempDir::new().unwrap();
    // A port nobody listens on: the OS's pick, released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = tmp.path().join("hotline.toml");
    std::fs::write(&config, format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
    let (code, out, err) = hotline_status(&config, false);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("not running"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_call_id_of_the_call_span() {
    use std::io::BufRead;
    let _g = SERIAL.lock().await;
    let tmp = tempfile::TempDir::new().unwrap();
    let prompts = write_short_prompts(&tmp.path().join("prompts"), &PromptLengths::default());
    let config = tmp.path().join("hotline.toml");
    std::fs::write(
        &config,
        format!(
            "[sip]\nlisten = \"127.0.0.1:0\"\n[media]\nrtp_ports = \"46000-46999\"\n\
             [database]\nurl = \"sqlite://{dir}/hotline.db\"\n\
             [menu]\nprompts_dir = \"{prompts}\"\ntimeout_s = 1\n\
             [roster]\nfile = \"{dir}/roster.toml\"\n[admin]\nlisten = \"\"\n\
             [log]\nformat = \"json\"\n",
            dir = tmp.path().display(),
            prompts = prompts.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(std::result::Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let mut all = Vec::new();
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        // Every line is a JSON object; the start line names the SIP address.
        let addr: std::net::SocketAddr = loop {
            let line = lines.recv().await.expect("daemon exited early");
            let v: serde_json::Value = serde_json::from_str(&line).expect("not a JSON line");
            all.push(line);
            if v["fields"]["message"] == "hotline is answering calls" {
                break v["fields"]["udp_tcp"].as_str().unwrap().parse().unwrap();
            }
        };
        let phone = Phone::new(Transport::Udp, addr).await.unwrap();
        let call_id = format!("{}@127.0.0.1", random_token(12));
        let call = phone
            .call(CallOptions {
                call_id: Some(call_id.clone()),
                ..CallOptions::default()
            })
            .await
            .unwrap();
        assert_eq!(call.status, 200);
        wait_for_prompt(&call, "menu", Duration::from_secs(5)).await;
        assert_eq!(call.hangup().await.unwrap(), 200);
        sleep(Duration::from_millis(500)).await;
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        while let Some(line) = lines.recv().await {
            all.push(line);
        }
        call_id
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let call_id = result.unwrap_or_else(|_| panic!("timed out; log:\n{}", all.join("\n")));
    let in_span: Vec<&String> = all
        .iter()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["span"]["call_id"] == call_id.as_str() && v["spans"][0]["name"] == "call"
        })
        .collect();
    assert!(
        !in_span.is_empty(),
        "no line in the call's span:\n{}",
        all.join("\n")
    );
}
