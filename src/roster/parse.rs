//! Reading `roster.toml`: serde reads a raw shape whose checked values keep their
//! `toml::Spanned` position, then [`validate`] builds the [`Roster`], collecting
//! every error at once with file, line and field (as `crate::config` does).

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use chrono::{NaiveDate, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;
use toml::{Spanned, Value};

use super::{Fallback, Override, Phone, Roster, Shift, TimeOfDay, Volunteer, DEFAULT_TIMEZONE};
use crate::config::Station;
use crate::diag::{parse_toml, read_file, Checker, ConfigErrors};

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
struct RawRoster {
    timezone: Option<Spanned<String>>,
    volunteer: Vec<RawVolunteer>,
    shift: Vec<RawShift>,
    #[serde(rename = "override")]
    overrides: Vec<RawOverride>,
    fallback: Vec<RawFallback>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVolunteer {
    id: Spanned<String>,
    name: Spanned<String>,
    phone: Spanned<String>,
    #[serde(default)]
    screen: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShift {
    station: Spanned<String>,
    volunteer: Spanned<String>,
    days: Spanned<Value>,
    start: Spanned<Value>,
    end: Spanned<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    date: Spanned<Value>,
    start: Option<Spanned<Value>>,
    end: Option<Spanned<Value>>,
    station: Spanned<String>,
    volunteer: Spanned<String>,
    replaces: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFallback {
    station: Spanned<String>,
    volunteers: Vec<Spanned<String>>,
}

// ---- validation ----

/// What entries are checked against: the configured stations, and the
/// volunteers defined so far (id to the line of its `[[volunteer]]`).
struct Known<'a> {
    stations: &'a [Station],
    volunteers: HashMap<String, usize>,
}

impl Known<'_> {
    /// The station id, if it is one of the configured stations.
    fn station(&self, c: &mut Checker, table: &str, v: &Spanned<String>) -> Option<String> {
        let id = v.get_ref();
        if self.stations.iter().any(|s| &s.id == id) {
            return Some(id.clone());
        }
        let known: Vec<&str> = self.stations.iter().map(|s| s.id.as_str()).collect();
        c.error(
            v.span(),
            &format!("{table} station"),
            format!("unknown station {id:?} (stations: {})", known.join(", ")),
        );
        None
    }

    /// The volunteer id, if some `[[volunteer]]` has it.
    fn volunteer(&self, c: &mut Checker, field: &str, v: &Spanned<String>) -> Option<String> {
        let id = v.get_ref();
        if self.volunteers.contains_key(id) {
            return Some(id.clone());
        }
        c.error(
            v.span(),
            field,
            format!("unknown volunteer {id:?}: add a [[volunteer]] with id = {id:?} first"),
        );
        None
    }
}

/// A time value, "08:00" or a TOML local time; "24:00" only if `end`.
fn time(c: &mut Checker, field: &str, v: &Spanned<Value>, end: bool) -> Option<TimeOfDay> {
    let parsed = match v.get_ref() {
        Value::String(s) => parse_time(s),
        Value::Datetime(dt) => match (dt.date, dt.time, dt.offset) {
            (None, Some(t), None) if t.second == 0 && t.nanosecond == 0 => {
                TimeOfDay::new(t.hour.into(), t.minute.into()).ok_or(())
            }
            _ => Err(()),
        },
        _ => Err(()),
    };
    match parsed {
        Ok(t) if t.minutes() < super::DAY_MINUTES || end => Some(t),
        _ => {
            let last = if end { "24:00" } else { "23:59" };
            c.error(
                v.span(),
                field,
                format!(
                    "expected a time \"HH:MM\" from \"00:00\" to \"{last}\", found {}",
                    shown(v.get_ref())
                ),
            );
            None
        }
    }
}

fn validate(
    raw: RawRoster,
    text: &str,
    source: &Path,
    stations: &[Station],
) -> Result<Roster, ConfigErrors> {
    let mut c = Checker::new(text, source);
    let mut known = Known {
        stations,
        volunteers: HashMap::new(),
    };
    let mut roster = Roster::empty();
    roster.source = source.to_path_buf();

    if let Some(tz) = &raw.timezone {
        match tz.get_ref().parse::<Tz>() {
            Ok(t) => roster.timezone = t,
            Err(_) => c.error(
                tz.span(),
                "timezone",
                format!(
                    "unknown timezone {:?}: expected an IANA name like \"{}\"",
                    tz.get_ref(),
                    DEFAULT_TIMEZONE.name()
                ),
            ),
        }
    }

    // [[volunteer]]: id -> line of first definition.
    let ids = &mut known.volunteers;
    for v in raw.volunteer {
        let id = v.id.get_ref();
        if !valid_id(id) {
            c.error(
                v.id.span(),
                "[[volunteer]] id",
                format!("{id:?} is not a valid id: use letters, digits, '_' or '-'"),
            );
            // Still known, so shifts naming it do not add "unknown volunteer" errors.
            ids.entry(id.clone()).or_insert(c.line(v.id.span()));
        } else if let Some(first) = ids.get(id) {
            c.error(
                v.id.span(),
                "[[volunteer]] id",
                format!("duplicate volunteer id {id:?}, already used at line {first}"),
            );
        } else {
            ids.insert(id.clone(), c.line(v.id.span()));
        }
        if v.name.get_ref().trim().is_empty() {
            c.error(
                v.name.span(),
                "[[volunteer]] name",
                "must not be empty".into(),
            );
        }
        let phone = match parse_phone(v.phone.get_ref()) {
            Ok(p) => p,
            Err(msg) => {
                c.error(v.phone.span(), "[[volunteer]] phone", msg);
                continue;
            }
        };
        roster.volunteers.push(Volunteer {
            id: id.clone(),
            name: v.name.into_inner(),
            phone,
            screen: v.screen,
        });
    }

    // [[shift]], remembering each one's line and weekly minutes for the overlap check.
    let mut placed: Vec<(Shift, usize, Vec<Range<u32>>)> = Vec::new();
    // (station, volunteer) -> positions in `placed`, so each shift is checked
    // against its own pair's shifts only.
    let mut pairs: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for s in raw.shift {
        let station = known.station(&mut c, "[[shift]]", &s.station);
        let volunteer = known.volunteer(&mut c, "[[shift]] volunteer", &s.volunteer);
        let days = match parse_days(s.days.get_ref()) {
            Ok(d) => Some(d),
            Err(msg) => {
                c.error(s.days.span(), "[[shift]] days", msg);
                None
            }
        };
        let start = time(&mut c, "[[shift]] start", &s.start, false);
        let end = time(&mut c, "[[shift]] end", &s.end, true);
        if let (Some(a), Some(b)) = (start, end) {
            if a == b {
                c.error(s.end.span(), "[[shift]] end", empty_span_message(a));
                continue;
            }
        }
        let (Some(station), Some(volunteer), Some(days), Some(start), Some(end)) =
            (station, volunteer, days, start, end)
        else {
            continue;
        };
        let shift = Shift {
            station,
            volunteer,
            days,
            start,
            end,
        };
        let spans = weekly_minutes(&shift);
        let line = c.line(s.station.span());
        let pair = pairs
            .entry((shift.station.clone(), shift.volunteer.clone()))
            .or_default();
        if let Some((_, other, _)) = pair
            .iter()
            .map(|&i| &placed[i])
            .find(|(_, _, os)| overlaps(os, &spans))
        {
            c.error(
                s.start.span(),
                "[[shift]] start",
                format!(
                    "overlaps the shift at line {other} for the same volunteer {:?} and station {:?}",
                    shift.volunteer, shift.station
                ),
            );
            continue;
        }
        pair.push(placed.len());
        placed.push((shift, line, spans));
    }
    roster.shifts = placed.into_iter().map(|(s, _, _)| s).collect();

    // [[override]]
    let mut covers: Vec<(Override, usize, Range<i64>)> = Vec::new();
    let mut cover_pairs: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for o in raw.overrides {
        let date = match parse_date(o.date.get_ref()) {
            Some(d) => Some(d),
            None => {
                c.error(
                    o.date.span(),
                    "[[override]] date",
                    format!(
                        "expected a date \"YYYY-MM-DD\", found {}",
                        shown(o.date.get_ref())
                    ),
                );
                None
            }
        };
        let start = match &o.start {
            Some(v) => time(&mut c, "[[override]] start", v, false),
            None => TimeOfDay::new(0, 0),
        };
        let end = match &o.end {
            Some(v) => time(&mut c, "[[override]] end", v, true),
            None => TimeOfDay::new(24, 0),
        };
        let station = known.station(&mut c, "[[override]]", &o.station);
        let volunteer = known.volunteer(&mut c, "[[override]] volunteer", &o.volunteer);
        let replaces = match &o.replaces {
            Some(r) => known
                .volunteer(&mut c, "[[override]] replaces", r)
                .map(Some),
            None => Some(None),
        };
        if let (Some(a), Some(b)) = (start, end) {
            if a == b {
                let span = o.end.as_ref().map_or(o.date.span(), |e| e.span());
                c.error(span, "[[override]] end", empty_span_message(a));
                continue;
            }
        }
        let (Some(date), Some(start), Some(end), Some(station), Some(volunteer), Some(replaces)) =
            (date, start, end, station, volunteer, replaces)
        else {
            continue;
        };
        let o_line = c.line(o.station.span());
        let cover = Override {
            date,
            start,
            end,
            station,
            volunteer,
            replaces,
        };
        let span = absolute_minutes(&cover);
        let pair = cover_pairs
            .entry((cover.station.clone(), cover.volunteer.clone()))
            .or_default();
        if let Some((_, other, _)) = pair
            .iter()
            .map(|&i| &covers[i])
            .find(|(_, _, xs)| xs.start < span.end && span.start < xs.end)
        {
            c.error(
                o.date.span(),
                "[[override]] date",
                format!(
                    "overlaps the override at line {other} for the same volunteer {:?} and station {:?}",
                    cover.volunteer, cover.station
                ),
            );
            continue;
        }
        pair.push(covers.len());
        covers.push((cover, o_line, span));
    }
    roster.overrides = covers.into_iter().map(|(o, _, _)| o).collect();

    // [[fallback]]: one per station.
    let mut fallback_lines: HashMap<String, usize> = HashMap::new();
    for f in raw.fallback {
        let station = known.station(&mut c, "[[fallback]]", &f.station);
        let mut volunteers = Vec::new();
        for v in &f.volunteers {
            if let Some(id) = known.volunteer(&mut c, "[[fallback]] volunteers", v) {
                if !volunteers.contains(&id) {
                    volunteers.push(id);
                }
            }
        }
        let Some(station) = station else { continue };
        if let Some(first) = fallback_lines.get(&station) {
            c.error(
                f.station.span(),
                "[[fallback]] station",
                format!(
                    "station {station:?} already has a [[fallback]] at line {first}: list everyone in one"
                ),
            );
            continue;
        }
        fallback_lines.insert(station.clone(), c.line(f.station.span()));
        roster.fallbacks.push(Fallback {
            station,
            volunteers,
        });
    }

    c.finish(roster.indexed())
}

fn empty_span_message(t: TimeOfDay) -> String {
    format!(
        "ends when it starts ({t}), so it covers nothing; \
         for a whole day write start = \"00:00\", end = \"24:00\""
    )
}

/// Ids are ASCII letters, digits, '_' and '-': they go into logs and call records.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `"13800138000"`, `"+8613800138000"` or a `sip:`/`sips:` URI `user@host[:port][;params]`.
pub(crate) fn parse_phone(s: &str) -> Result<Phone, String> {
    let expected = "expected a phone number (3 to 15 digits, optionally after '+') \
                    or a SIP URI like \"sip:1001@192.0.2.10:5060\"";
    let digits = s.strip_prefix('+').unwrap_or(s);
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        return if (3..=15).contains(&digits.len()) {
            Ok(Phone::Number(s.to_string()))
        } else {
            Err(format!("{s:?} has {} digits; {expected}", digits.len()))
        };
    }
    let lower = s.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("sip:")
        .or_else(|| lower.strip_prefix("sips:"))
    else {
        return Err(format!("{expected}, found {s:?}"));
    };
    let bad = |why: &str| Err(format!("{s:?} is not a valid SIP URI ({why}); {expected}"));
    let addr = rest.split(';').next().unwrap_or("");
    if rest.split(';').skip(1).any(|p| p.is_empty()) || rest.contains(char::is_whitespace) {
        return bad("empty parameter or space");
    }
    let Some((user, hostport)) = addr.rsplit_once('@') else {
        return bad("no user@host");
    };
    let user_ok = !user.is_empty()
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/%".contains(c));
    if !user_ok {
        return bad("bad user part");
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let Some((h, after)) = v6.split_once(']') else {
            return bad("unclosed '['");
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("bad IPv6 address");
        }
        (h, after.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let host_ok = !host.is_empty()
        && (host.contains(':')
            || host.split('.').all(|l| {
                !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }));
    if !host_ok {
        return bad("bad host");
    }
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(n) if n > 0) {
            return bad("bad port");
        }
    }
    Ok(Phone::Uri(s.to_string()))
}

/// `"8:00"`, `"08:00"` .. `"24:00"`.
fn parse_time(s: &str) -> Result<TimeOfDay, ()> {
    let (h, m) = s.trim().split_once(':').ok_or(())?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(());
    }
    let h: u16 = h.parse().map_err(|_| ())?;
    let m: u16 = m.parse().map_err(|_| ())?;
    TimeOfDay::new(h, m).ok_or(())
}

/// `"2026-12-01"` or a TOML local date.
fn parse_date(v: &Value) -> Option<NaiveDate> {
    match v {
        Value::String(s) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok(),
        Value::Datetime(dt) => match (dt.date, dt.time) {
            (Some(d), None) => NaiveDate::from_ymd_opt(d.year.into(), d.month.into(), d.day.into()),
            _ => None,
        },
        _ => None,
    }
}

/// `"daily"`, `"weekdays"`, `"weekends"`, `"mon-fri"`, `"sat"`, or a list of those.
/// Returns the days Monday first, no repeats.
fn parse_days(v: &Value) -> Result<Vec<Weekday>, String> {
    let words: Vec<&str> = match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => {
            let mut words = Vec::new();
            for item in items {
                match item {
                    Value::String(s) => words.push(s.as_str()),
                    other => return Err(days_error(&shown(other))),
                }
            }
            words
        }
        other => return Err(days_error(&shown(other))),
    };
    if words.is_empty() {
        return Err("must name at least one day".into());
    }
    let mut set = [false; 7];
    for w in words {
        let w = w.trim().to_ascii_lowercase();
        let range = match w.as_str() {
            "daily" | "everyday" | "all" => (Weekday::Mon, Weekday::Sun),
            "weekdays" => (Weekday::Mon, Weekday::Fri),
            "weekends" => (Weekday::Sat, Weekday::Sun),
            _ => match w.split_once('-') {
                Some((a, b)) => match (weekday(a), weekday(b)) {
                    (Some(a), Some(b)) => (a, b),
                    _ => return Err(days_error(&format!("{w:?}"))),
                },
                None => match weekday(&w) {
                    Some(d) => (d, d),
                    None => return Err(days_error(&format!("{w:?}"))),
                },
            },
        };
        // Inclusive, wrapping past Sunday ("fri-mon").
        let mut d = range.0;
        loop {
            set[d.num_days_from_monday() as usize] = true;
            if d == range.1 {
                break;
            }
            d = d.succ();
        }
    }
    let mut days = Vec::new();
    let mut d = Weekday::Mon;
    for on in set {
        if on {
            days.push(d);
        }
        d = d.succ();
    }
    Ok(days)
}

fn days_error(found: &str) -> String {
    format!(
        "expected day names (\"mon\" .. \"sun\", \"mon-fri\", \"daily\", \"weekdays\", \
         \"weekends\") or a list of them, found {found}"
    )
}

fn weekday(s: &str) -> Option<Weekday> {
    let s = s.trim();
    if s.len() < 3 {
        return None;
    }
    // chrono accepts "mon" and "monday"; anything else it rejects.
    s.parse::<Weekday>().ok()
}

/// A value as the admin wrote it, for "found ..." in messages.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

const WEEK_MINUTES: u32 = 7 * 24 * 60;

/// The minutes of the week (Monday 00:00 = 0) a shift covers, wrapped at Sunday midnight.
pub(crate) fn weekly_minutes(s: &Shift) -> Vec<Range<u32>> {
    let (start, end) = (u32::from(s.start.minutes()), u32::from(s.end.minutes()));
    let len = if start < end {
        end - start
    } else {
        end + 1440 - start
    };
    let mut out = Vec::new();
    for d in &s.days {
        let a = d.num_days_from_monday() * 1440 + start;
        let b = a + len;
        if b <= WEEK_MINUTES {
            out.push(a..b);
        } else {
            out.push(a..WEEK_MINUTES);
            out.push(0..b - WEEK_MINUTES);
        }
    }
    out
}

fn overlaps(a: &[Range<u32>], b: &[Range<u32>]) -> bool {
    a.iter()
        .any(|x| b.iter().any(|y| x.start < y.end && y.start < x.end))
}

/// An override's minutes since 1970-01-01 (local), for the overlap check.
fn absolute_minutes(o: &Override) -> Range<i64> {
    let day = o
        .date
        .signed_duration_since(NaiveDate::default())
        .num_days()
        * 1440;
    let (start, end) = (i64::from(o.start.minutes()), i64::from(o.end.minutes()));
    let end = if start < end { end } else { end + 1440 };
    day + start..day + end
}

#[cfg(test)]
mod tests {
    use super::super::tests::{roster, stations};
    use super::*;
    use crate::diag::ConfigError;

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
