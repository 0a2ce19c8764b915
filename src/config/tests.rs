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

#[test]
fn embedded_default_parses_and_matches_builtin_defaults() {
    let parsed = Config::from_str(EMBEDDED, Path::new(EMBEDDED_SOURCE)).unwrap();
    assert_eq!(parsed, builtin_defaults());
    let cfg = Config::embedded_default();
    assert_eq!(cfg.source, PathBuf::from("<embedded defaults>"));
    assert_eq!(cfg.sip.listen, "127.0.0.1:5060".parse().unwrap());
    assert_eq!(cfg.sip.numbers, vec!["6289110"]);
    assert!(cfg.sip.user_agent.starts_with("hotline/"));
    assert_eq!(cfg.media.rtp_ports, (20000, 20999));
    assert_eq!(cfg.menu.timeout_s, 6);
    assert_eq!(cfg.menu.max_tries, 3);
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
