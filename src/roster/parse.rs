//! Reading `roster.toml`: serde reads a raw shape whose checked values keep their
//! `toml::Spanned` position, then `validate` builds the [`Roster`], collecting
//! every error at once with file, line and field, through the same
//! `crate::diag` as the config.

use std::path::Path;

use serde::Deserialize;
use toml::{Spanned, Value};

use super::validate::validate;
use super::Roster;
use crate::config::Station;
use crate::diag::{parse_toml, read_file, ConfigErrors};

impl Roster {
    /// Reads and validates a roster file against the configured stations.
    pub fn load(path: &Path, stations: &[Station]) -> Result<Roster, ConfigErrors> {
        Roster::from_str(&read_file(path)?, path, stations)
    }

    /// Parses and validates roster text; `source` names it in errors.
    #[allow(clippy::should_implement_trait)] // needs `source` and stations, so not FromStr
    pub fn from_str(
        text: &str,
        source: &Path,
        stations: &[Station],
    ) -> Result<Roster, ConfigErrors> {
        validate(parse_toml(text, source)?, text, source, stations)
    }
}

// ---- raw shape ----

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawRoster {
    pub(super) timezone: Option<Spanned<String>>,
    pub(super) volunteer: Vec<RawVolunteer>,
    pub(super) shift: Vec<RawShift>,
    #[serde(rename = "override")]
    pub(super) overrides: Vec<RawOverride>,
    pub(super) fallback: Vec<RawFallback>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVolunteer {
    pub(super) id: Spanned<String>,
    pub(super) name: Spanned<String>,
    pub(super) phone: Spanned<String>,
    #[serde(default)]
    pub(super) screen: bool,
    #[serde(default)]
    pub(super) srtp: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShift {
    pub(super) station: Spanned<String>,
    pub(super) volunteer: Spanned<String>,
    pub(super) days: Spanned<Value>,
    pub(super) start: Spanned<Value>,
    pub(super) end: Spanned<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOverride {
    pub(super) date: Spanned<Value>,
    pub(super) start: Option<Spanned<Value>>,
    pub(super) end: Option<Spanned<Value>>,
    pub(super) station: Spanned<String>,
    pub(super) volunteer: Spanned<String>,
    pub(super) replaces: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFallback {
    pub(super) station: Spanned<String>,
    pub(super) volunteers: Vec<Spanned<String>>,
}

#[cfg(test)]
mod tests {
    use super::super::tests::{roster, stations};
    use super::super::values::{parse_days, parse_phone};
    use super::super::{Phone, TimeOfDay};
    use super::*;
    use crate::diag::ConfigError;
    use chrono::Weekday;

    fn errors(text: &str) -> Vec<ConfigError> {
        match Roster::from_str(text, Path::new("roster.toml"), &stations()) {
            Ok(r) => panic!("expected errors, got {r:?}"),
            Err(e) => e.0,
        }
    }

    fn one_error(text: &str) -> String {
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{}", ConfigErrors(errs.clone()));
        errs[0].to_string()
    }

    const PEOPLE: &str = "[[volunteer]]\nid = \"wang\"\nname = \"王阿姨\"\nphone = \"13800138000\"\n\n\
                          [[volunteer]]\nid = \"li\"\nname = \"李老师\"\nphone = \"sip:1001@192.0.2.10\"\n\n";
    // PEOPLE is 10 lines; what follows starts at line 11.

    fn shift(station: &str, who: &str, days: &str, start: &str, end: &str) -> String {
        format!(
            "[[shift]]\nstation = \"{station}\"\nvolunteer = \"{who}\"\ndays = {days}\nstart = \"{start}\"\nend = \"{end}\"\n"
        )
    }

    #[test]
    fn worked_example_loads_with_default_stations() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/roster.toml");
        let r = match Roster::load(&path, &stations()) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(r.timezone, chrono_tz::Asia::Shanghai);
        assert!(r.volunteers.len() >= 6);
        assert!(r
            .volunteers
            .iter()
            .any(|v| v.phone == Phone::Uri("sip:1001@127.0.0.1:5070".into())));
        for st in stations() {
            assert!(r.shifts.iter().any(|s| s.station == st.id), "{}", st.id);
        }
        assert_eq!(r.source, path);
    }

    #[test]
    fn worked_example_has_no_gaps_and_a_sensible_table() {
        use super::super::tests::sh;
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/roster.toml");
        let r = Roster::load(&path, &stations()).map_err(|e| e.to_string());
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.gaps(&stations()), Vec::<String>::new());
        // Wed 2026-12-02 09:00: 刘医生 covers for 王阿姨 at health, then the desk.
        let who: Vec<&str> = r
            .hunt_list("health", sh(2026, 12, 2, 9, 0))
            .iter()
            .map(|v| v.id.as_str())
            .collect();
        assert_eq!(who, ["liu", "li", "sun"]);
        // Sat 03:00: the overnight desk (Friday's shift), then the coordinator.
        let who: Vec<&str> = r
            .hunt_list("counseling", sh(2026, 12, 5, 3, 0))
            .iter()
            .map(|v| v.id.as_str())
            .collect();
        assert_eq!(who, ["zhou", "sun"]);
    }

    #[test]
    fn invalid_volunteer_id_is_reported_once() {
        let e = one_error(&format!(
            "[[volunteer]]\nid = \"wang ayi\"\nname = \"王阿姨\"\nphone = \"110\"\n{}",
            shift("desk", "wang ayi", "\"daily\"", "08:00", "12:00")
        ));
        assert!(
            e.starts_with("roster.toml:2: [[volunteer]] id: \"wang ayi\" is not a valid id"),
            "{e}"
        );
    }

    #[test]
    fn unknown_station_names_line_and_field() {
        let e = one_error(&format!(
            "{PEOPLE}{}",
            shift("helth", "wang", "\"daily\"", "08:00", "12:00")
        ));
        assert!(
            e.starts_with("roster.toml:12: [[shift]] station: unknown station \"helth\""),
            "{e}"
        );
        assert!(e.contains("health"), "{e}");
    }

    #[test]
    fn unknown_volunteer_names_line_and_field() {
        let e = one_error(&format!(
            "{PEOPLE}{}",
            shift("health", "zhang", "\"daily\"", "08:00", "12:00")
        ));
        assert!(
            e.starts_with("roster.toml:13: [[shift]] volunteer: unknown volunteer \"zhang\""),
            "{e}"
        );
        let e = one_error(&format!(
            "{PEOPLE}[[fallback]]\nstation = \"desk\"\nvolunteers = [\"li\", \"zhang\"]\n"
        ));
        assert!(
            e.starts_with("roster.toml:13: [[fallback]] volunteers: unknown volunteer \"zhang\""),
            "{e}"
        );
        let e = one_error(&format!(
            "{PEOPLE}[[override]]\ndate = \"2026-12-01\"\nstation = \"desk\"\nvolunteer = \"li\"\nreplaces = \"zhang\"\n"
        ));
        assert!(
            e.starts_with("roster.toml:15: [[override]] replaces:"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_volunteer_id_names_second_line() {
        let e = one_error(&format!(
            "{PEOPLE}[[volunteer]]\nid = \"wang\"\nname = \"王大爷\"\nphone = \"13800138009\"\n"
        ));
        assert_eq!(
            e,
            "roster.toml:12: [[volunteer]] id: duplicate volunteer id \"wang\", already used at line 2"
        );
    }

    #[test]
    fn bad_times_are_reported() {
        let e = one_error(&format!(
            "{PEOPLE}{}",
            shift("health", "wang", "\"daily\"", "25:00", "12:00")
        ));
        assert!(
            e.starts_with("roster.toml:15: [[shift]] start: expected a time"),
            "{e}"
        );
        assert!(e.contains("found \"25:00\""), "{e}");
        // 24:00 ends a shift but cannot start one.
        let e = one_error(&format!(
            "{PEOPLE}{}",
            shift("health", "wang", "\"daily\"", "24:00", "12:00")
        ));
        assert!(e.starts_with("roster.toml:15: [[shift]] start:"), "{e}");
        for bad in ["8", "08:0", "08:60", "ab:cd", "-1:00"] {
            let e = one_error(&format!(
                "{PEOPLE}{}",
                shift("health", "wang", "\"daily\"", "08:00", bad)
            ));
            assert!(
                e.starts_with("roster.toml:16: [[shift]] end:"),
                "{bad}: {e}"
            );
        }
        // TOML local times are accepted, as is "24:00" as an end.
        let r = roster(&format!(
            "{PEOPLE}[[shift]]\nstation = \"health\"\nvolunteer = \"wang\"\ndays = \"daily\"\nstart = 08:00:00\nend = \"24:00\"\n"
        ));
        assert_eq!(r.shifts[0].start, TimeOfDay::new(8, 0).unwrap());
        assert_eq!(r.shifts[0].end.minutes(), 1440);
    }

    #[test]
    fn bad_days_are_reported() {
        for bad in ["\"someday\"", "[\"mon\", \"fry\"]", "[]", "3", "[\"mo\"]"] {
            let e = one_error(&format!(
                "{PEOPLE}{}",
                shift("health", "wang", bad, "08:00", "12:00")
            ));
            assert!(
                e.starts_with("roster.toml:14: [[shift]] days:"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn day_words_and_ranges() {
        use Weekday::*;
        let p = |s: &str| parse_days(&s.parse::<toml::Table>().unwrap()["d"]);
        assert_eq!(p("d = \"weekdays\""), Ok(vec![Mon, Tue, Wed, Thu, Fri]));
        assert_eq!(p("d = \"weekends\""), Ok(vec![Sat, Sun]));
        assert_eq!(p("d = \"daily\"").map(|d| d.len()), Ok(7));
        assert_eq!(p("d = [\"Sun\", \"monday\", \"mon\"]"), Ok(vec![Mon, Sun]));
        assert_eq!(p("d = \"fri-mon\""), Ok(vec![Mon, Fri, Sat, Sun]));
        assert_eq!(
            p("d = [\"tue-thu\", \"sat\"]"),
            Ok(vec![Tue, Wed, Thu, Sat])
        );
    }

    #[test]
    fn malformed_phone_is_reported() {
        let e = one_error(
            "[[volunteer]]\nid = \"wang\"\nname = \"王阿姨\"\nphone = \"138-0013-8000\"\n",
        );
        assert!(e.starts_with("roster.toml:4: [[volunteer]] phone:"), "{e}");
        for bad in [
            "12",
            "1234567890123456",
            "++86138",
            "tel:13800138000",
            "sip:192.0.2.10",
            "sip:@host",
            "sip:1001@",
            "sip:1001@host:0",
            "sip:1001@host:99999",
            "sip:1001@bad host",
            "sip:1001@[::1",
            "",
        ] {
            assert!(parse_phone(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "110",
            "+8613800138000",
            "13800138000",
            "sip:1001@192.0.2.10:5060",
            "sips:wang@pbx.example.org",
            "sip:1001@[2001:db8::1]:5060;transport=tcp",
        ] {
            assert!(parse_phone(good).is_ok(), "{good:?} rejected");
        }
        assert_eq!(
            parse_phone("+8613800138000"),
            Ok(Phone::Number("+8613800138000".into()))
        );
    }

    #[test]
    fn empty_shift_is_reported() {
        let e = one_error(&format!(
            "{PEOPLE}{}",
            shift("health", "wang", "\"daily\"", "08:00", "08:00")
        ));
        assert!(
            e.starts_with("roster.toml:16: [[shift]] end: ends when it starts (08:00)"),
            "{e}"
        );
    }

    #[test]
    fn overlapping_shifts_same_station_and_volunteer_are_an_error() {
        let text = format!(
            "{PEOPLE}{}{}",
            shift("desk", "li", "\"sun\"", "20:00", "08:00"),
            shift("desk", "li", "\"mon\"", "07:00", "09:00")
        );
        // The Sunday night shift runs into Monday morning: wraps the week.
        let e = one_error(&text);
        assert!(
            e.starts_with("roster.toml:21: [[shift]] start: overlaps the shift at line 12"),
            "{e}"
        );
        // Back to back is fine.
        roster(&format!(
            "{PEOPLE}{}{}",
            shift("desk", "li", "\"sun\"", "20:00", "08:00"),
            shift("desk", "li", "\"mon\"", "08:00", "09:00")
        ));
    }

    #[test]
    fn same_volunteer_on_two_stations_at_once_is_allowed() {
        let r = roster(&format!(
            "{PEOPLE}{}{}",
            shift("desk", "li", "\"daily\"", "08:00", "17:00"),
            shift("health", "li", "\"daily\"", "08:00", "17:00")
        ));
        assert_eq!(r.shifts.len(), 2);
    }

    #[test]
    fn overlapping_overrides_are_an_error() {
        let o = |date: &str, start: &str, end: &str| {
            format!("[[override]]\ndate = \"{date}\"\nstart = \"{start}\"\nend = \"{end}\"\nstation = \"health\"\nvolunteer = \"li\"\n")
        };
        let e = one_error(&format!(
            "{PEOPLE}{}{}",
            o("2026-12-01", "22:00", "06:00"),
            o("2026-12-02", "05:00", "09:00")
        ));
        assert!(
            e.starts_with("roster.toml:18: [[override]] date: overlaps the override at line 15"),
            "{e}"
        );
        let e = one_error(&format!("{PEOPLE}{}", o("2026-13-01", "08:00", "09:00")));
        assert!(
            e.starts_with("roster.toml:12: [[override]] date: expected a date"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_fallback_and_bad_timezone() {
        let e = one_error(&format!(
            "{PEOPLE}[[fallback]]\nstation = \"desk\"\nvolunteers = [\"li\"]\n\
             [[fallback]]\nstation = \"desk\"\nvolunteers = [\"wang\"]\n"
        ));
        assert!(
            e.starts_with("roster.toml:15: [[fallback]] station: station \"desk\" already has"),
            "{e}"
        );
        let e = one_error("timezone = \"Asia/Shangai\"\n");
        assert!(
            e.starts_with("roster.toml:1: timezone: unknown timezone \"Asia/Shangai\""),
            "{e}"
        );
    }

    #[test]
    fn typos_and_missing_fields_name_the_table() {
        let e = one_error(&format!(
            "{PEOPLE}[[shift]]\nstation = \"desk\"\nvolunter = \"li\"\n"
        ));
        assert!(e.starts_with("roster.toml:13: [[shift]] volunter:"), "{e}");
        assert!(e.contains("unknown field"), "{e}");
        let e = one_error("[[volunteer]]\nid = \"wang\"\nname = \"王阿姨\"\n");
        assert!(e.contains("missing field `phone`"), "{e}");
        assert!(e.starts_with("roster.toml:1"), "{e}");
        let e = one_error(
            "[[volunteer]]\nid = \"wang\"\nname = \"x\"\nphone = \"110\"\nscreen = \"yes\"\n",
        );
        assert!(e.starts_with("roster.toml:5: [[volunteer]] screen:"), "{e}");
    }

    #[test]
    fn srtp_is_off_unless_set_and_a_wrong_type_names_line_and_field() {
        let text = "[[volunteer]]\nid = \"li\"\nname = \"x\"\nphone = \"sips:1001@192.0.2.10\"\n";
        let r = Roster::from_str(text, Path::new("roster.toml"), &stations()).unwrap();
        assert!(!r.volunteers[0].srtp);
        let on = format!("{text}srtp = true\n");
        let r = Roster::from_str(&on, Path::new("roster.toml"), &stations()).unwrap();
        assert!(r.volunteers[0].srtp);
        let e = one_error(&format!("{text}srtp = 1\n"));
        assert!(e.starts_with("roster.toml:5: [[volunteer]] srtp:"), "{e}");
    }

    #[test]
    fn all_errors_are_reported_in_line_order() {
        let text = format!(
            "{PEOPLE}{}{}",
            shift("helth", "zhang", "\"daily\"", "25:00", "12:00"),
            shift("health", "wang", "\"someday\"", "08:00", "08:00")
        );
        let lines: Vec<_> = errors(&text).iter().map(|e| e.line).collect();
        assert_eq!(
            lines,
            [Some(12), Some(13), Some(15), Some(20), Some(22)],
            "{:?}",
            errors(&text)
        );
    }

    #[test]
    fn load_names_a_missing_file() {
        let e = Roster::load(Path::new("/nonexistent/roster.toml"), &stations()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/roster.toml: cannot read"),
            "{e}"
        );
    }
}
