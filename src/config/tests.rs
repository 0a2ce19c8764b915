//! Loading the config: defaults, located errors, every section's checks.
use super::defaults::builtin_defaults;
use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_str(text, Path::new("config/hotline.toml"))
}

fn one_error(text: &str) -> ConfigError {
    let errs = parse(text).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs.into_iter().next().unwrap()
}

/// The admin's file, read when the test runs: compiling it in would rebuild the
/// program (and this test) on every edit of the admin's copy.
fn shipped_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/hotline.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn shipped_config_states_exactly_the_builtin_defaults() {
    let parsed = Config::from_str(&shipped_config(), Path::new(EMBEDDED_SOURCE)).unwrap();
    assert_eq!(
        parsed,
        builtin_defaults(),
        "config/hotline.toml and config/defaults.rs disagree: change both"
    );
}

#[test]
fn embedded_default_is_the_builtin_defaults() {
    assert_eq!(Config::embedded_default(), builtin_defaults());
    let cfg = Config::embedded_default();
    assert_eq!(cfg.source, PathBuf::from("<embedded defaults>"));
    assert_eq!(cfg.sip.listen, "127.0.0.1:5060".parse().unwrap());
    assert_eq!(cfg.sip.numbers, vec!["6289110"]);
    assert!(cfg.sip.user_agent.starts_with("hotline/"));
    assert_eq!(cfg.media.rtp_ports, (20000, 20999));
    assert_eq!(cfg.menu.timeout_s, 6);
    assert_eq!(cfg.menu.max_tries, 3);
    assert_eq!(cfg.menu.silent_tries, 1);
    let keys: String = cfg.stations.iter().map(|s| s.key).collect();
    assert_eq!(keys, "1234560");
    assert_eq!(cfg.station('0').unwrap().id, "desk");
    assert_eq!(cfg.station('3').unwrap().name, "心理咨询疏导站");
    assert_eq!(cfg.prompts_path(), PathBuf::from("prompts/zh"));
    assert_eq!(cfg.public_ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
    // What the menu is built from: desk key 0, 6 s, seven keys.
    assert_eq!(DESK_KEY, '0');
    assert_eq!(cfg.menu.timeout_s, 6);
    assert_eq!(cfg.stations.len(), 7);
    assert_eq!(cfg.forward.ringback.to_string(), "450@1000/4000");
}

#[test]
fn parses_cadences() {
    let c: Cadence = "450@1000/4000".parse().expect("valid");
    assert_eq!(c.freqs, vec![450.0]);
    assert_eq!(c.pattern_ms, vec![1000, 4000]);
    assert_eq!(c.to_string(), "450@1000/4000");
    let uk: Cadence = " 400+450 @ 400/200/400/2000 ".parse().expect("valid");
    assert_eq!(uk.freqs, vec![400.0, 450.0]);
    assert_eq!(uk.pattern_ms.iter().sum::<u32>(), 3000);
    for bad in [
        "",
        "450",
        "450@",
        "x@1000/4000",
        "450@1000",
        "450@0/4000",
        "5000@1000/4000",
        "1+2+3@1/1",
        "450@1000/-4",
        "450@50000/50000",
    ] {
        let e = bad.parse::<Cadence>().expect_err(bad);
        assert!(e.to_string().contains("expected e.g."), "{e}");
    }
}

#[test]
fn bad_ringback_names_line_and_field() {
    let e = one_error("[forward]\nringback = \"450@1000\"\n");
    assert_eq!(e.line, Some(2));
    assert_eq!(e.field.as_deref(), Some("[forward] ringback"));
    assert!(e.message.contains("on/off pairs"), "{}", e.message);
}

#[test]
fn empty_file_gives_defaults() {
    let cfg = parse("").unwrap();
    assert_eq!(
        Config {
            source: PathBuf::from(EMBEDDED_SOURCE),
            ..cfg.clone()
        },
        Config::embedded_default()
    );
    assert_eq!(cfg.source, PathBuf::from("config/hotline.toml"));
    assert!(parse("# only a comment\n\n[menu]\n").is_ok());
}

#[test]
fn partial_file_overrides_only_what_it_says() {
    let cfg = parse("[sip]\npublic_addr = \"2001:db8::1\"\n[menu]\nlanguage = \"en\"\n").unwrap();
    assert_eq!(cfg.public_ip(), "2001:db8::1".parse::<IpAddr>().unwrap());
    assert_eq!(cfg.prompts_path(), PathBuf::from("prompts/en"));
    assert_eq!(cfg.menu.timeout_s, 6);
    assert_eq!(cfg.stations.len(), 7);
}

#[test]
fn typo_key_is_reported_with_line_and_field() {
    let e =
        one_error("[sip]\nlisten = \"0.0.0.0:5060\"\n\n[menu]\nlanguage = \"zh\"\ntimout_s = 6\n");
    assert_eq!(e.line, Some(6));
    assert_eq!(e.field.as_deref(), Some("[menu] timout_s"));
    assert!(
        e.message.contains("unknown field `timout_s`"),
        "{}",
        e.message
    );
    assert!(e
        .to_string()
        .starts_with("config/hotline.toml:6: [menu] timout_s: "));
}

#[test]
fn unknown_table_is_reported() {
    let e = one_error("[sip]\n\n[sipp]\nlisten = \"x\"\n");
    assert_eq!(e.line, Some(3));
    assert_eq!(e.field.as_deref(), Some("sipp"));
}

#[test]
fn wrong_type_is_reported_with_line() {
    let e = one_error("# comment\n[menu]\nlanguage = \"zh\"\ntimeout_s = \"six\"\n");
    assert_eq!(
        e.to_string(),
        "config/hotline.toml:4: [menu] timeout_s: expected a whole number of seconds, found \"six\""
    );
    let e = one_error("[menu]\nmax_tries = -1\n");
    assert_eq!(e.line, Some(2));
    assert_eq!(e.field.as_deref(), Some("[menu] max_tries"));
    let e = one_error("[sip]\nnumbers = \"6289110\"\n");
    assert_eq!(e.line, Some(2));
    assert_eq!(e.field.as_deref(), Some("[sip] numbers"));
}

#[test]
fn tries_of_zero_are_refused_naming_the_field() {
    for field in ["max_tries", "silent_tries"] {
        let e = one_error(&format!("[menu]\n{field} = 0\n"));
        assert_eq!(e.line, Some(2));
        assert_eq!(e.field.as_deref(), Some(format!("[menu] {field}").as_str()));
        assert!(e.to_string().ends_with("must be at least 1"), "{e}");
    }
    let cfg = Config::from_str("[menu]\nsilent_tries = 2\n", Path::new("x.toml")).unwrap();
    assert_eq!(cfg.menu.silent_tries, 2);
}

#[test]
fn unsupported_database_url_names_line_and_field_not_password() {
    let e = one_error("[database]\nurl = \"mysql://admin:secret@db/hotline\"\n");
    assert_eq!(e.line, Some(2));
    assert_eq!(e.field.as_deref(), Some("[database] url"));
    assert!(e.message.contains("found a mysql:// URL"), "{e}");
    assert!(!e.to_string().contains("secret"), "{e}");
    for ok in [
        "sqlite://data/hotline.db",
        "sqlite::memory:",
        "postgres://u@h/db",
        "postgresql://u@h/db",
    ] {
        let text = format!("[database]\nurl = \"{ok}\"\n");
        assert!(parse(&text).is_ok(), "{ok}");
    }
}

#[test]
fn toml_syntax_error_has_a_line() {
    let e = one_error("[sip]\nlisten = \"127.0.0.1:5060\n");
    assert_eq!(e.line, Some(2));
}

const STATIONS: &str = "[[station]]\nkey = \"1\"\nid = \"property\"\nname = \"a\"\n\n\
                        [[station]]\nkey = \"0\"\nid = \"desk\"\nname = \"b\"\n\n";

#[test]
fn duplicate_station_key_reported_at_the_second() {
    let text = format!("{STATIONS}[[station]]\nkey = \"1\"\nid = \"health\"\nname = \"c\"\n");
    let e = one_error(&text);
    assert_eq!(e.line, Some(12));
    assert_eq!(e.field.as_deref(), Some("[[station]] key"));
    assert!(e.message.contains("used by two stations"));
}

#[test]
fn duplicate_station_id_and_bad_key_are_all_reported() {
    let text = format!(
        "{STATIONS}[[station]]\nkey = 2\nid = \"property\"\nname = \"c\"\n\n\
         [[station]]\nkey = \"12\"\nid = \"x\"\nname = \"d\"\n"
    );
    let errs = parse(&text).unwrap_err().0;
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(errs[0].line, Some(13));
    assert_eq!(errs[0].field.as_deref(), Some("[[station]] id"));
    assert_eq!(errs[1].line, Some(17));
    assert_eq!(errs[1].field.as_deref(), Some("[[station]] key"));
}

#[test]
fn station_typo_and_missing_field_are_reported() {
    let e = one_error(&format!(
        "{STATIONS}[[station]]\nkey = \"2\"\nid = \"health\"\nnmae = \"c\"\n"
    ));
    assert_eq!(e.line, Some(14));
    assert_eq!(e.field.as_deref(), Some("[[station]] nmae"));
    let e = one_error("[[station]]\nkey = \"0\"\nid = \"desk\"\n");
    assert!(e.message.contains("missing field `name`"), "{e}");
    assert!(e.line.is_some());
}

#[test]
fn bare_integer_station_key_is_accepted() {
    let cfg = parse("[[station]]\nkey = 0\nid = \"desk\"\nname = \"d\"\n").unwrap();
    assert_eq!(cfg.stations[0].key, '0');
}

#[test]
fn missing_desk_station_is_an_error() {
    let e = one_error("[menu]\n\n[[station]]\nkey = \"1\"\nid = \"property\"\nname = \"a\"\n");
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("duty desk"), "{}", e.message);
}

#[test]
fn bad_rtp_ports_are_reported() {
    for bad in ["20001-20999", "20000", "30000-20000", "a-b", "20000-70000"] {
        let e = one_error(&format!("[media]\nrtp_ports = \"{bad}\"\n"));
        assert_eq!(e.line, Some(2), "{bad}");
        assert_eq!(e.field.as_deref(), Some("[media] rtp_ports"));
    }
    let cfg = parse("[media]\nrtp_ports = \"10000-10001\"\n").unwrap();
    assert_eq!(cfg.media.rtp_ports, (10000, 10001));
}

#[test]
fn other_semantic_errors_name_their_lines() {
    let text =
        "[sip]\nlisten = \"localhost\"\nnumbers = []\n[menu]\nlanguage = \"fr\"\ntimeout_s = 0\n";
    let errs = parse(text).unwrap_err().0;
    let lines: Vec<_> = errs.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![Some(2), Some(3), Some(5), Some(6)]);
    let all = ConfigErrors(errs).to_string();
    assert!(all.contains("config/hotline.toml:5: [menu] language: unknown language \"fr\""));
}

#[test]
fn load_reads_a_file_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hotline.toml");
    std::fs::write(&path, "[daemon]\ndrain_timeout_s = 5\n").unwrap();
    let cfg = Config::load(&path).unwrap();
    assert_eq!(cfg.daemon.drain_timeout_s, 5);
    assert_eq!(cfg.source, path);

    let missing = dir.path().join("nope.toml");
    let e = Config::load(&missing).unwrap_err();
    assert_eq!(e.0[0].file, missing);
    assert!(e.to_string().contains("cannot read"));
}

#[test]
fn limits_and_allow_are_read_with_bare_addresses_and_cidrs() {
    let text = "[sip]\nallow = [\"192.0.2.0/24\", \"2001:db8::7\", \"10.1.2.3/8\"]\n\
                [limits]\ntcp_per_source = 8\ntcp_total = 100\nidle_s = 40\npartial_s = 5\n\
                handshake_s = 3\nmax_message = 4096\nscanners = [\"evil\"]\npike_requests = 50\n\
                pike_window_s = 1\npike_ban_s = 60\ntrusted = [\"203.0.113.0/28\"]\n\
                max_calls = 10\nretry_after_s = 0\n";
    let cfg = parse(text).unwrap();
    let allow: Vec<String> = cfg.sip.allow.iter().map(|n| n.to_string()).collect();
    // Host bits of a CIDR are cleared; a bare address is one host.
    assert_eq!(allow, ["192.0.2.0/24", "2001:db8::7/128", "10.0.0.0/8"]);
    let l = &cfg.limits;
    assert_eq!((l.tcp_per_source, l.tcp_total), (8, 100));
    assert_eq!((l.idle_s, l.partial_s, l.handshake_s), (40, 5, 3));
    assert_eq!(l.max_message, 4096);
    assert_eq!(l.scanners, ["evil"]);
    assert_eq!(
        (l.pike_requests, l.pike_window_s, l.pike_ban_s),
        (50, 1, 60)
    );
    assert_eq!(l.trusted[0].to_string(), "203.0.113.0/28");
    assert_eq!((l.max_calls, l.retry_after_s), (Some(10), 0));
}

#[test]
fn defaults_of_limits_are_the_documented_ones() {
    let cfg = parse("").unwrap();
    let l = &cfg.limits;
    assert_eq!((l.tcp_per_source, l.tcp_total), (64, 4096));
    assert_eq!((l.idle_s, l.partial_s, l.handshake_s), (32, 10, 10));
    assert_eq!(l.max_message, 16384);
    assert!(l.scanners.iter().any(|s| s == "friendly-scanner"));
    assert_eq!(
        (l.pike_requests, l.pike_window_s, l.pike_ban_s),
        (16, 2, 300)
    );
    let trusted: Vec<String> = l.trusted.iter().map(|n| n.to_string()).collect();
    assert_eq!(trusted, ["127.0.0.1/32", "::1/128"]);
    assert_eq!((l.max_calls, l.retry_after_s), (None, 30));
    assert!(cfg.sip.allow.is_empty());
    assert_eq!(cfg.sip.tls, None);
}

#[test]
fn bad_cidrs_name_file_line_and_field() {
    let text = "[sip]\nallow = [\"192.0.2.0/24\",\n  \"192.0.2.300\"]\n\
                [limits]\ntrusted = [\"10.0.0.0/33\", \"trunk.example.net\"]\n";
    let errs = parse(text).unwrap_err().0;
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert_eq!(errs[0].line, Some(3));
    assert_eq!(errs[0].field.as_deref(), Some("[sip] allow"));
    assert!(
        errs[0].message.contains("\"192.0.2.300\""),
        "{}",
        errs[0].message
    );
    assert!(errs[0].message.contains("CIDR"), "{}", errs[0].message);
    for e in &errs[1..] {
        assert_eq!(e.line, Some(5));
        assert_eq!(e.field.as_deref(), Some("[limits] trusted"));
    }
    let all = ConfigErrors(errs).to_string();
    assert!(
        all.contains("config/hotline.toml:5: [limits] trusted"),
        "{all}"
    );
}

#[test]
fn bad_limit_values_name_their_lines() {
    let text = "[limits]\ntcp_per_source = 0\ntcp_total = -1\nidle_s = 0\n\
                max_message = 100\nscanners = [\"\"]\npike_requests = 0\npike_ban_s = 0\n\
                max_calls = 0\nretry_after_s = 100000\nbogus = 1\n";
    let errs = parse(text).unwrap_err().0;
    // A negative number and an unknown key are TOML-shape errors, found first.
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, Some(3));
    let text = "[limits]\ntcp_per_source = 0\nidle_s = 0\nmax_message = 100\n\
                scanners = [\"ok\", \" \"]\npike_requests = 0\npike_ban_s = 0\n\
                max_calls = 0\nretry_after_s = 100000\n";
    let errs = parse(text).unwrap_err().0;
    let got: Vec<_> = errs
        .iter()
        .map(|e| (e.line, e.field.clone().unwrap_or_default()))
        .collect();
    let want: Vec<_> = [
        (2, "tcp_per_source"),
        (3, "idle_s"),
        (4, "max_message"),
        (5, "scanners"),
        (6, "pike_requests"),
        (7, "pike_ban_s"),
        (8, "max_calls"),
        (9, "retry_after_s"),
    ]
    .iter()
    .map(|(l, f)| (Some(*l), format!("[limits] {f}")))
    .collect();
    assert_eq!(got, want);
    assert!(
        errs[2].message.contains("between 1024 and"),
        "{}",
        errs[2].message
    );
    let unknown = one_error("[limits]\nban_s = 3\n");
    assert_eq!(unknown.line, Some(2));
}

#[test]
fn tls_needs_listen_cert_and_key_together() {
    let e = one_error("[sip]\ntls_listen = \"0.0.0.0:5061\"\ntls_cert = \"c.pem\"\n");
    assert_eq!(e.field.as_deref(), Some("[sip] tls_key"));
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("together"), "{}", e.message);
    let e = one_error("[sip]\ntls_listen = \"5061\"\ntls_cert = \"c\"\ntls_key = \"k\"\n");
    assert_eq!(e.field.as_deref(), Some("[sip] tls_listen"));
    assert_eq!(e.line, Some(2));
    let cfg =
        parse("[sip]\ntls_listen = \"[::]:5061\"\ntls_cert = \"c\"\ntls_key = \"k\"\n").unwrap();
    let tls = cfg.sip.tls.unwrap();
    assert_eq!(tls.listen.port(), 5061);
    assert_eq!(tls.key, PathBuf::from("k"));
}

#[test]
fn sdes_over_plain_is_off_unless_set_and_a_wrong_type_names_its_line() {
    assert!(!parse("[sip]\n").unwrap().sip.sdes_over_plain);
    assert!(
        parse("[sip]\nsdes_over_plain = true\n")
            .unwrap()
            .sip
            .sdes_over_plain
    );
    let e = one_error("[sip]\nlisten = \"127.0.0.1:5060\"\nsdes_over_plain = \"yes\"\n");
    assert_eq!(e.line, Some(3));
    assert!(e.to_string().contains("sdes_over_plain"), "{e}");
}

#[test]
fn selftest_token_is_off_unless_set_and_an_empty_one_names_its_line() {
    assert_eq!(parse("").unwrap().selftest.token, None);
    let cfg = parse("[selftest]\ntoken = \"n1ght-check\"\n").unwrap();
    assert_eq!(cfg.selftest.token.as_deref(), Some("n1ght-check"));
    let e = one_error("[selftest]\n\ntoken = \"\"\n");
    assert_eq!(e.line, Some(3));
    assert_eq!(e.field.as_deref(), Some("[selftest] token"));
    let e = one_error("[selftest]\ntoken = \"two words\"\n");
    assert_eq!(e.line, Some(2));
    let e = one_error("[selftest]\ntokn = \"x\"\n");
    assert!(e.to_string().contains("tokn"), "{e}");
}
