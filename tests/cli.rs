//! The admin's commands, run as the real binary: `check`, `on-duty`, `report`, `calls`.

use std::path::Path;
use std::process::{Command, Output};

fn hotline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the hotline binary")
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
    assert!(t.contains("OK (7 stations, 15 prompts"), "{t}");
    assert!(t.contains("OK (2 volunteers, 2 shifts)"), "{t}");
    // Outside 08:00-17:30 on weekdays the health station still reaches the desk,
    // so no gap for health; a station nobody covers at all falls back to the desk too.
    assert!(
        t.contains("volunteer wang cannot be called: a phone number, but no [trunk]"),
        "{t}"
    );
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
