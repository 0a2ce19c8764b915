//! From the raw shape to the [`Roster`]: every entry checked against the
//! configured stations and the volunteers defined, one function per table.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

use chrono_tz::Tz;
use toml::{Spanned, Value};

use super::parse::{RawFallback, RawOverride, RawRoster, RawShift, RawVolunteer};
use super::values::{
    absolute_minutes, overlaps, parse_date, parse_days, parse_phone, parse_time, shown,
    weekly_minutes,
};
use super::{Fallback, Override, Roster, Shift, TimeOfDay, Volunteer, DEFAULT_TIMEZONE};
use crate::config::Station;
use crate::diag::{Checker, ConfigErrors};

/// The [`Roster`] the raw shape describes, or every problem in it.
pub(super) fn validate(
    raw: RawRoster,
    text: &str,
    source: &Path,
    stations: &[Station],
) -> Result<Roster, ConfigErrors> {
    let mut c = Checker::new(text, source);
    let mut roster = Roster::empty();
    roster.source = source.to_path_buf();
    if let Some(tz) = raw.timezone.as_ref().and_then(|tz| timezone(&mut c, tz)) {
        roster.timezone = tz;
    }
    let mut known = Known {
        stations,
        volunteers: HashMap::new(),
    };
    roster.volunteers = volunteers(&mut c, raw.volunteer, &mut known.volunteers);
    roster.shifts = shifts(&mut c, &known, raw.shift);
    roster.overrides = overrides(&mut c, &known, raw.overrides);
    roster.fallbacks = fallbacks(&mut c, &known, raw.fallback);
    c.finish(roster.indexed())
}

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

fn timezone(c: &mut Checker, tz: &Spanned<String>) -> Option<Tz> {
    let parsed = tz.get_ref().parse::<Tz>().ok();
    if parsed.is_none() {
        let message = format!(
            "unknown timezone {:?}: expected an IANA name like \"{}\"",
            tz.get_ref(),
            DEFAULT_TIMEZONE.name()
        );
        c.error(tz.span(), "timezone", message);
    }
    parsed
}

/// `[[volunteer]]`, filling `ids` (id to the line of its first definition).
fn volunteers(
    c: &mut Checker,
    raw: Vec<RawVolunteer>,
    ids: &mut HashMap<String, usize>,
) -> Vec<Volunteer> {
    let mut out = Vec::new();
    for v in raw {
        let id = v.id.get_ref();
        if !valid_id(id) {
            let message = format!("{id:?} is not a valid id: use letters, digits, '_' or '-'");
            c.error(v.id.span(), "[[volunteer]] id", message);
            // Still known, so shifts naming it do not add "unknown volunteer" errors.
            ids.entry(id.clone()).or_insert(c.line(v.id.span()));
        } else if let Some(first) = ids.get(id) {
            let message = format!("duplicate volunteer id {id:?}, already used at line {first}");
            c.error(v.id.span(), "[[volunteer]] id", message);
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
        match parse_phone(v.phone.get_ref()) {
            Ok(phone) => out.push(Volunteer {
                id: id.clone(),
                name: v.name.into_inner(),
                phone,
                screen: v.screen,
                srtp: v.srtp,
            }),
            Err(msg) => c.error(v.phone.span(), "[[volunteer]] phone", msg),
        }
    }
    out
}

/// Entries accepted so far, each with its line and the minutes it covers,
/// grouped by (station, volunteer): one person's entries for one station
/// must not overlap, and a new entry is compared with that pair's only.
struct Placed<T, M> {
    entries: Vec<(T, usize, M)>,
    by_pair: HashMap<(String, String), Vec<usize>>,
}

impl<T, M> Placed<T, M> {
    fn new() -> Self {
        Placed {
            entries: Vec::new(),
            by_pair: HashMap::new(),
        }
    }

    /// The line of an entry of `pair` whose minutes overlap `minutes`, if any.
    fn clash(
        &self,
        pair: &(String, String),
        minutes: &M,
        overlap: impl Fn(&M, &M) -> bool,
    ) -> Option<usize> {
        let placed = self.by_pair.get(pair)?;
        placed
            .iter()
            .filter_map(|&i| self.entries.get(i))
            .find(|(_, _, m)| overlap(m, minutes))
            .map(|&(_, line, _)| line)
    }

    fn push(&mut self, pair: (String, String), entry: T, line: usize, minutes: M) {
        self.by_pair
            .entry(pair)
            .or_default()
            .push(self.entries.len());
        self.entries.push((entry, line, minutes));
    }

    fn into_entries(self) -> Vec<T> {
        self.entries.into_iter().map(|(e, _, _)| e).collect()
    }
}

/// The message for an entry overlapping the `kind` at line `other`.
fn overlap_message(kind: &str, other: usize, (station, volunteer): &(String, String)) -> String {
    format!(
        "overlaps the {kind} at line {other} for the same volunteer {volunteer:?} and station {station:?}"
    )
}

/// `[[shift]]`: each valid, and no two of one volunteer at one station overlapping.
fn shifts(c: &mut Checker, known: &Known, raw: Vec<RawShift>) -> Vec<Shift> {
    let mut placed: Placed<Shift, Vec<Range<u32>>> = Placed::new();
    for s in raw {
        let Some(shift) = shift(c, known, &s) else {
            continue;
        };
        let pair = (shift.station.clone(), shift.volunteer.clone());
        let minutes = weekly_minutes(&shift);
        match placed.clash(&pair, &minutes, |a, b| overlaps(a, b)) {
            Some(other) => {
                let message = overlap_message("shift", other, &pair);
                c.error(s.start.span(), "[[shift]] start", message);
            }
            None => placed.push(pair, shift, c.line(s.station.span()), minutes),
        }
    }
    placed.into_entries()
}

fn shift(c: &mut Checker, known: &Known, s: &RawShift) -> Option<Shift> {
    let station = known.station(c, "[[shift]]", &s.station);
    let volunteer = known.volunteer(c, "[[shift]] volunteer", &s.volunteer);
    let days = match parse_days(s.days.get_ref()) {
        Ok(d) => Some(d),
        Err(msg) => {
            c.error(s.days.span(), "[[shift]] days", msg);
            None
        }
    };
    let start = time(c, "[[shift]] start", &s.start, false);
    let end = time(c, "[[shift]] end", &s.end, true);
    if let (Some(a), Some(b)) = (start, end) {
        if a == b {
            c.error(s.end.span(), "[[shift]] end", empty_span_message(a));
            return None;
        }
    }
    Some(Shift {
        station: station?,
        volunteer: volunteer?,
        days: days?,
        start: start?,
        end: end?,
    })
}

/// `[[override]]`: each valid, and no two of one volunteer at one station overlapping.
fn overrides(c: &mut Checker, known: &Known, raw: Vec<RawOverride>) -> Vec<Override> {
    let mut placed: Placed<Override, Range<i64>> = Placed::new();
    for o in raw {
        let Some(cover) = cover(c, known, &o) else {
            continue;
        };
        let pair = (cover.station.clone(), cover.volunteer.clone());
        let minutes = absolute_minutes(&cover);
        match placed.clash(&pair, &minutes, |a, b| a.start < b.end && b.start < a.end) {
            Some(other) => {
                let message = overlap_message("override", other, &pair);
                c.error(o.date.span(), "[[override]] date", message);
            }
            None => placed.push(pair, cover, c.line(o.station.span()), minutes),
        }
    }
    placed.into_entries()
}

/// One override; without `start`/`end` it covers its whole date.
fn cover(c: &mut Checker, known: &Known, o: &RawOverride) -> Option<Override> {
    let date = parse_date(o.date.get_ref());
    if date.is_none() {
        let message = format!(
            "expected a date \"YYYY-MM-DD\", found {}",
            shown(o.date.get_ref())
        );
        c.error(o.date.span(), "[[override]] date", message);
    }
    let start = match &o.start {
        Some(v) => time(c, "[[override]] start", v, false),
        None => TimeOfDay::new(0, 0),
    };
    let end = match &o.end {
        Some(v) => time(c, "[[override]] end", v, true),
        None => TimeOfDay::new(24, 0),
    };
    let station = known.station(c, "[[override]]", &o.station);
    let volunteer = known.volunteer(c, "[[override]] volunteer", &o.volunteer);
    let replaces = match &o.replaces {
        Some(r) => known.volunteer(c, "[[override]] replaces", r).map(Some),
        None => Some(None),
    };
    if let (Some(a), Some(b)) = (start, end) {
        if a == b {
            let span = o.end.as_ref().map_or(o.date.span(), |e| e.span());
            c.error(span, "[[override]] end", empty_span_message(a));
            return None;
        }
    }
    Some(Override {
        date: date?,
        start: start?,
        end: end?,
        station: station?,
        volunteer: volunteer?,
        replaces: replaces?,
    })
}

/// `[[fallback]]`: one per station, each volunteer listed once.
fn fallbacks(c: &mut Checker, known: &Known, raw: Vec<RawFallback>) -> Vec<Fallback> {
    let mut out = Vec::new();
    let mut lines: HashMap<String, usize> = HashMap::new();
    for f in raw {
        let station = known.station(c, "[[fallback]]", &f.station);
        let mut listed = HashSet::new();
        let mut volunteers = Vec::new();
        for v in &f.volunteers {
            if let Some(id) = known.volunteer(c, "[[fallback]] volunteers", v) {
                if listed.insert(id.clone()) {
                    volunteers.push(id);
                }
            }
        }
        let Some(station) = station else { continue };
        if let Some(first) = lines.get(&station) {
            let message = format!(
                "station {station:?} already has a [[fallback]] at line {first}: list everyone in one"
            );
            c.error(f.station.span(), "[[fallback]] station", message);
            continue;
        }
        lines.insert(station.clone(), c.line(f.station.span()));
        out.push(Fallback {
            station,
            volunteers,
        });
    }
    out
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
