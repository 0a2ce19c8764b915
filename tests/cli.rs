//! The admin's commands, run as the real binary: `check`, `on-duty`, `report`,
//! `calls`, and `run` failing to start.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn hotline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the hotline binary")
}

/// `hotline` run from the folder `dir`, as an admin in another folder would.
fn hotline_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the hotline binary")
}

/// `hotline run`, which must fail to start: its output once it exits, or a
/// panic (after killing it) if it is still running after 30 s.
fn run_expecting_exit(cfg: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["run", "--config", cfg])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the hotline binary");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("poll hotline run").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect hotline run");
            panic!("hotline run kept running:\n{}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("collect hotline run")
}

/// Makes the SQLite file `cfg` names, as `hotline run` would on start.
fn create_database(dir: &Path) {
    let url = format!("sqlite://{}/hotline.db", dir.display());
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    rt.block_on(hotline::store::Store::open(&url))
        .expect("create the call records database");
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const ROSTER: &str = r#"
timezone = "Asia/Shanghai"

[[volunteer]]
id = "wang"
name = "王阿姨"
phone = "13800138001"
screen = true

[[volunteer]]
id = "li"
name = "李老师"
phone = "sip:1001@127.0.0.1:5070"

[[shift]]
station = "health"
volunteer = "wang"
days = "weekdays"
start = "08:00"
end = "17:30"

[[shift]]
station = "desk"
volunteer = "li"
days = "daily"
start = "00:00"
end = "24:00"
"#;

fn write_config(dir: &Path, extra: &str) -> String {
    let roster = dir.join("roster.toml");
    std::fs::write(&roster, ROSTER).unwrap();
    let cfg = dir.join("hotline.toml");
    let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"sqlite://{}/hotline.db\"\n\n[menu]\nprompts_dir = \"{}\"\n{extra}\n[roster]\nfile = \"{}\"\n",
            dir.display(),
            prompts.display(),
            roster.display()
        ),
    )
    .unwrap();
    cfg.display().to_string()
}

#[test]
fn check_accepts_a_good_config_and_warns_of_roster_gaps() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let out = hotline(&["check", "--config", &cfg]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("OK (7 stations, 16 prompts"), "{t}");
    assert!(t.contains("OK (2 volunteers, 2 shifts)"), "{t}");
    // Outside 08:00-17:30 on weekdays the health station still reaches the desk,
    // so no gap for health; a station nobody covers at all falls back to the desk too.
    assert!(
        t.contains("volunteer wang cannot be called: a phone number, but no [trunk]"),
        "{t}"
    );
    // The database is looked at, not made.
    assert!(
        t.contains("hotline.db does not exist yet; `hotline run` creates it"),
        "{t}"
    );
    assert!(!tmp.path().join("hotline.db").exists(), "{t}");
    create_database(tmp.path());
    let t = text(&hotline(&["check", "--config", &cfg]));
    assert!(
        t.contains("call records database: OK (opened read-only)"),
        "{t}"
    );
}

#[test]
fn check_rejects_a_database_url_it_cannot_use() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let good = std::fs::read_to_string(&cfg).unwrap();
    let line = good.lines().nth(1).unwrap().to_string();
    assert!(line.starts_with("url = \"sqlite://"), "{good}");
    std::fs::write(&cfg, good.replace(&line, "url = \"mysql://x\"")).unwrap();
    let out = hotline(&["check", "--config", &cfg]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains(&format!("{cfg}:2: [database] url:")), "{t}");
    assert!(t.contains("mysql://"), "{t}");

    // A PostgreSQL server that does not answer (nothing listens on the port).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("url = \"postgres://hotline:secret@127.0.0.1:{port}/hotline\"");
    std::fs::write(&cfg, good.replace(&line, &url)).unwrap();
    let out = hotline(&["check", "--config", &cfg]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(&format!("{cfg}: [database] url: cannot connect")),
        "{t}"
    );
    assert!(
        t.contains(&format!("127.0.0.1:{port}")) && !t.contains("secret"),
        "{t}"
    );
}

#[test]
fn run_prints_a_config_error_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "timout_s = 6\n");
    let out = run_expecting_exit(&cfg);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    let error = format!("{cfg}:6: [menu] timout_s");
    assert_eq!(t.matches(&error).count(), 1, "{t}");
}

#[test]
fn run_stops_with_one_clear_line_when_the_tcp_port_is_taken() {
    // TCP taken, UDP free on the same port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    drop(std::net::UdpSocket::bind(addr).expect("the UDP port is free"));
    let tmp = tempfile::tempdir().unwrap();
    let extra = format!("\n[sip]\nlisten = \"{addr}\"\n\n[admin]\nlisten = \"\"\n");
    let cfg = write_config(tmp.path(), &extra);
    let out = run_expecting_exit(&cfg);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    let line = format!("cannot start: cannot listen for SIP on tcp {addr}");
    assert_eq!(t.matches(&line).count(), 1, "{t}");
    // Plain text on a pipe, and no stack internals.
    assert!(!t.contains('\x1b'), "colour codes in piped logs: {t:?}");
    assert!(!t.contains("rsipstack"), "{t}");
    drop(taken);
}

#[test]
fn help_describes_every_option() {
    let t = text(&hotline(&["report", "--help"]));
    assert!(t.contains("The configuration file"), "{t}");
    let json = t.lines().find(|l| l.contains("--json")).unwrap_or("");
    assert!(json.contains("Print JSON instead of a table"), "{t}");
    let t = text(&hotline(&["check", "--help"]));
    assert!(t.contains("the roster file"), "{t}");
    assert!(t.contains("[database] url"), "{t}");
}

#[test]
fn report_rejects_from_after_to() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    create_database(tmp.path());
    let args = [
        "report",
        "--config",
        &cfg,
        "--from",
        "2026-11-30",
        "--to",
        "2026-11-01",
    ];
    let out = hotline(&args);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("--from 2026-11-30 is after --to 2026-11-01"),
        "{t}"
    );
}

#[test]
fn read_commands_never_create_a_database() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let text_cfg = std::fs::read_to_string(&cfg).unwrap();
    let line = text_cfg.lines().nth(1).unwrap().to_string();
    // Relative to the folder the command runs in, as in the shipped config.
    std::fs::write(
        &cfg,
        text_cfg.replace(&line, "url = \"sqlite://data/hotline.db\""),
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    for args in [
        &["calls", "--config", &cfg][..],
        &["report", "--config", &cfg][..],
    ] {
        let out = hotline_in(elsewhere.path(), args);
        let t = text(&out);
        assert!(!out.status.success(), "{args:?}: {t}");
        let missing = elsewhere.path().join("data/hotline.db");
        let said = format!(
            "{cfg}: [database] url: no call records database at {}",
            missing.display()
        );
        assert!(t.contains(&said), "{args:?}: {t}");
        assert!(!t.contains("no calls recorded"), "{t}");
        assert!(
            !elsewhere.path().join("data").exists(),
            "{args:?} created data/"
        );
    }
}

#[test]
fn check_names_file_line_and_field_of_a_typo() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "timout_s = 6\n");
    let out = hotline(&["check", "--config", &cfg]);
    let t = text(&out);
    assert!(!out.status.success(), "a typo must fail the check: {t}");
    assert!(
        t.contains(&format!("{cfg}:6: [menu] timout_s")),
        "error must name file, line and field: {t}"
    );
}

#[test]
fn check_names_the_roster_line_of_an_unknown_station() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    let roster = tmp.path().join("roster.toml");
    std::fs::write(
        &roster,
        ROSTER.replace("station = \"health\"", "station = \"helth\""),
    )
    .unwrap();
    let out = hotline(&["check", "--config", &cfg]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("roster.toml:16:"), "{t}");
    assert!(t.contains("station") && t.contains("helth"), "{t}");
}

#[test]
fn on_duty_prints_the_hunt_list_at_a_moment() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    // 2026-12-01 is a Tuesday: wang is on health, then the desk's li.
    let out = hotline(&[
        "on-duty",
        "--config",
        &cfg,
        "--at",
        "2026-12-01 09:30",
        "--station",
        "health",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("2026-12-01 09:30"), "{t}");
    let wang = t.find("1. 王阿姨 (wang) 13800138001 [screen]").expect(&t);
    let li = t.find("2. 李老师 (li) sip:1001@127.0.0.1:5070").expect(&t);
    assert!(wang < li, "{t}");
    // Saturday: only the desk.
    let out = hotline(&[
        "on-duty",
        "--config",
        &cfg,
        "--at",
        "2026-12-05 09:30",
        "--station",
        "health",
    ]);
    let t = text(&out);
    assert!(t.contains("1. 李老师 (li)") && !t.contains("王阿姨"), "{t}");
}

#[test]
fn report_and_calls_work_on_an_empty_store() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "");
    create_database(tmp.path());
    let out = hotline(&[
        "report",
        "--config",
        &cfg,
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-30",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("2026-11-01 to 2026-11-30"), "{t}");
    let out = hotline(&["calls", "--config", &cfg, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

#[test]
fn check_names_a_missing_prompt_file() {
    let tmp = tempfile::tempdir().unwrap();
    let prompts = tmp.path().join("prompts");
    std::fs::create_dir_all(prompts.join("zh")).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/zh");
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n != "menu.wav") {
            std::fs::copy(&path, prompts.join("zh").join(path.file_name().unwrap())).unwrap();
        }
    }
    let cfg = write_config(tmp.path(), "");
    let text_cfg = std::fs::read_to_string(&cfg).unwrap().replace(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("prompts")
            .display()
            .to_string(),
        &prompts.display().to_string(),
    );
    std::fs::write(&cfg, text_cfg).unwrap();
    let out = hotline(&["check", "--config", &cfg]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("zh/menu.wav"),
        "the error must name the missing file: {t}"
    );
}

#[test]
fn run_logs_a_start_up_summary() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(
        tmp.path(),
        "\n[sip]\nlisten = \"127.0.0.1:0\"\n\n[media]\nrtp_ports = \"47400-47419\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["run", "--config", &cfg])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hotline run");
    let stderr = child.stderr.take().unwrap();
    // Read the log on a thread, so a daemon that says nothing cannot hang the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut log = Vec::new();
    while !log
        .iter()
        .any(|l: &String| l.contains("hotline is answering calls"))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => log.push(line),
            Err(_) => break,
        }
    }
    // Stop the daemon this test started, by its pid.
    let _ = child.kill();
    let _ = child.wait();
    let summary: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("start-up summary: "))
        .collect();
    let t = log.join("\n");
    let has = |s: &str| summary.iter().any(|l| l.contains(s));
    assert!(has("answering 6289110 on 127.0.0.1:"), "{t}");
    assert!(
        !has("answering 6289110 on 127.0.0.1:0 "),
        "the bound port: {t}"
    );
    assert!(has("admin listener on http://127.0.0.1:"), "{t}");
    assert!(
        has(&format!(
            "call records in sqlite://{}",
            tmp.path().display()
        )),
        "{t}"
    );
    assert!(
        has("no [trunk]: volunteers with phone numbers cannot be called"),
        "{t}"
    );
    assert!(has("roster ") && has("2 volunteers, 2 shifts"), "{t}");
    assert!(
        summary.iter().any(|l| l.contains("WARN")
            && l.contains("volunteer wang (王阿姨) 13800138001 cannot be called: a phone number, but no [trunk]")),
        "{t}"
    );
    // li is at the desk round the clock, so every station reaches somebody.
    assert!(has("key 0 desk (值班接待): now rings 李老师 (li)"), "{t}");
    assert!(!has("nobody can be reached now"), "{t}");
    assert_eq!(
        summary.len(),
        4 + 1 + 7,
        "once: 4 lines, 1 volunteer, 7 stations: {t}"
    );
}
