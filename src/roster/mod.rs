//! The duty roster (`config/roster.toml`): which volunteer answers for which
//! station, and when.
//!
//! Like the menu, the roster is data the admin edits by hand. It is read
//! (`parse`) and validated on load with errors naming file, line and field
//! (`validate`, `values`), indexed so a hunt list costs only the entries it
//! names, and swapped in while running without dropping calls ([`watch()`]).
//!
//! Everything here except loading and watching is plain data and pure functions of
//! a UTC instant, so "who is called for health on a Saturday at 07:00" is a unit
//! test with a fixed time, never a look at the clock.
//!
//! Times in the file are local to the roster's `timezone`. A shift whose end is
//! before its start runs past midnight: its `days` are the days it *starts*, so a
//! Friday 20:00-08:00 shift also covers Saturday 00:00-08:00.

mod parse;
mod reach;
mod report;
mod validate;
mod values;
mod watch;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc, Weekday};
use chrono_tz::Tz;

pub(crate) use reach::is_tls_uri;
pub use reach::{Reach, StationReach};
pub use report::{format_on_duty, parse_at};
pub use watch::{watch, ChangeDetector, FileStamp, RosterHandle, WatchAction};

/// Station id of the duty desk, whose volunteers back up every other station.
pub const DESK: &str = crate::config::DESK_ID;

/// The timezone used when the file names none.
pub const DEFAULT_TIMEZONE: Tz = chrono_tz::Asia::Shanghai;

/// Minutes in a day; also the largest [`TimeOfDay`] ("24:00", only as an end).
const DAY_MINUTES: u16 = 24 * 60;

/// The whole roster, validated. Plain data: compare, clone and query it freely.
/// Build it with [`Roster::load`], [`Roster::from_str`] or [`Roster::empty`]:
/// the lookups behind [`Roster::hunt_list`] are indexed once there, so treat
/// the fields as read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster {
    /// Local time of every shift and override.
    pub timezone: Tz,
    /// Everyone who can be called, in file order.
    pub volunteers: Vec<Volunteer>,
    /// The weekly timetable, in file order (the hunt order).
    pub shifts: Vec<Shift>,
    /// One-off cover on a date, tried before the weekly shifts.
    pub overrides: Vec<Override>,
    /// Per station, who is tried when everyone on duty has been tried.
    pub fallbacks: Vec<Fallback>,
    /// The file it came from (empty for [`Roster::empty`]); for log lines.
    pub source: PathBuf,
    /// Positions into the lists above, by volunteer and by station.
    index: Index,
}

/// The roster's lists by key, built once at load, so that a hunt list costs
/// the entries of the stations it names, whatever the size of the roster (a
/// district may keep every community's volunteers in one file).
#[derive(Clone, Default)]
struct Index {
    /// Volunteer id to its position in `volunteers`.
    volunteer: HashMap<String, usize>,
    /// Station id to what names it, volunteers as positions.
    station: HashMap<String, StationIndex>,
    /// Local date to the overrides starting on it: `(override, replaced volunteer)`.
    replacing: HashMap<NaiveDate, Vec<(usize, usize)>>,
}

/// One station's entries, in file order: overrides as `(entry position,
/// volunteer position)`.
#[derive(Clone, Default)]
struct StationIndex {
    overrides: Vec<(usize, usize)>,
    /// `(hours, volunteer position)`.
    shifts: Vec<(Week, usize)>,
    /// The fallback's volunteers, in calling order.
    fallback: Vec<usize>,
}

/// The index only restates the lists, so it never makes two rosters differ.
impl PartialEq for Index {
    fn eq(&self, _: &Index) -> bool {
        true
    }
}

impl Eq for Index {}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Index")
    }
}

/// Which volunteers (by position) a hunt list already holds: one bit each,
/// so the check is O(1) and a 10,000-volunteer roster costs 1.25 KB per list.
struct Seen(Vec<u64>);

impl Seen {
    fn new(volunteers: usize) -> Seen {
        Seen(vec![0; volunteers.div_ceil(64)])
    }

    /// Marks `i`; true if it was not marked before.
    fn insert(&mut self, i: usize) -> bool {
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        match self.0.get_mut(word) {
            Some(w) if *w & bit == 0 => {
                *w |= bit;
                true
            }
            _ => false,
        }
    }
}

/// A person who can be called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volunteer {
    /// Short stable id used by shifts and call records.
    pub id: String,
    /// Name for logs and the admin, e.g. "王阿姨".
    pub name: String,
    /// Where to ring them.
    pub phone: Phone,
    /// Ask them to press 1 before bridging, so a mobile's voicemail that picks
    /// up is not mistaken for the volunteer.
    pub screen: bool,
    /// Offer them encrypted audio only (RTP/SAVP with SDES keys, RFC 4568): the
    /// INVITE goes out only over TLS, unless `[sip] sdes_over_plain` allows more.
    pub srtp: bool,
}

/// How to reach a volunteer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phone {
    /// Digits with an optional leading `+`, called through the SIP trunk.
    Number(String),
    /// A `sip:`/`sips:` URI (softphone, desk phone), called directly.
    Uri(String),
}

impl Phone {
    /// The request URI to call: a number goes through the trunk at `trunk_domain`.
    pub fn sip_uri(&self, trunk_domain: &str) -> String {
        match self {
            Phone::Number(n) => format!("sip:{n}@{trunk_domain}"),
            Phone::Uri(u) => u.clone(),
        }
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phone::Number(s) | Phone::Uri(s) => f.write_str(s),
        }
    }
}

/// A time of day in whole minutes, 00:00 to 24:00 inclusive (24:00 only ends a shift).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    /// `None` unless `hour:minute` is 00:00..=24:00.
    pub fn new(hour: u16, minute: u16) -> Option<TimeOfDay> {
        let m = hour.checked_mul(60)?.checked_add(minute)?;
        (minute < 60 && m <= DAY_MINUTES).then_some(TimeOfDay(m))
    }

    /// Minutes since midnight.
    pub fn minutes(self) -> u16 {
        self.0
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// A weekly duty: `volunteer` answers for `station` on `days` from `start` to `end`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shift {
    /// Station id.
    pub station: String,
    /// Volunteer id.
    pub volunteer: String,
    /// Days the shift starts on, Monday first, no repeats.
    pub days: Vec<Weekday>,
    /// Local start, inclusive.
    pub start: TimeOfDay,
    /// Local end, exclusive; at or before `start` means the next day.
    pub end: TimeOfDay,
}

impl Shift {
    /// Whether the shift is on at local `minute` of `day`.
    pub fn covers(&self, day: Weekday, minute: u16) -> bool {
        Week::of(self).covers(day, minute)
    }
}

/// A shift's days and hours packed in 6 bytes (days as bits, Monday = bit 0):
/// what the hunt list tests for every shift of a station, kept in the index
/// so that test touches no heap memory.
#[derive(Debug, Clone, Copy)]
struct Week {
    days: u8,
    start: u16,
    end: u16,
}

impl Week {
    fn of(s: &Shift) -> Week {
        Week {
            days: s.days.iter().fold(0, |bits, d| bits | Week::bit(*d)),
            start: s.start.0,
            end: s.end.0,
        }
    }

    fn bit(d: Weekday) -> u8 {
        1 << d.num_days_from_monday()
    }

    /// Whether the shift is on at local `minute` of `day`; an end at or
    /// before the start runs into the next day.
    fn covers(self, day: Weekday, minute: u16) -> bool {
        let on = |d: Weekday| self.days & Week::bit(d) != 0;
        if self.start < self.end {
            on(day) && self.start <= minute && minute < self.end
        } else {
            (on(day) && minute >= self.start) || (on(day.pred()) && minute < self.end)
        }
    }
}

/// One-off cover on a date, e.g. while someone is in hospital.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Override {
    /// Local date the cover starts on.
    pub date: NaiveDate,
    /// Local start, inclusive.
    pub start: TimeOfDay,
    /// Local end, exclusive; at or before `start` means the next day.
    pub end: TimeOfDay,
    /// Station id.
    pub station: String,
    /// Volunteer id of whoever covers.
    pub volunteer: String,
    /// Volunteer id of someone away meanwhile (in hospital, say): not called
    /// for any station while this override is in force.
    pub replaces: Option<String>,
}

impl Override {
    /// Whether the cover is on at local `minute` of `date`.
    pub fn covers(&self, date: NaiveDate, minute: u16) -> bool {
        if self.start < self.end {
            date == self.date && self.start.0 <= minute && minute < self.end.0
        } else {
            (date == self.date && minute >= self.start.0)
                || (date.pred_opt() == Some(self.date) && minute < self.end.0)
        }
    }
}

/// Who is tried for a station at any hour, after everyone on duty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fallback {
    /// Station id; the desk's fallback backs up every station.
    pub station: String,
    /// Volunteer ids, in calling order.
    pub volunteers: Vec<String>,
}

impl Roster {
    /// No roster file: nobody on duty, every call ends at the desk's voicemail.
    pub fn empty() -> Roster {
        Roster {
            timezone: DEFAULT_TIMEZONE,
            volunteers: Vec::new(),
            shifts: Vec::new(),
            overrides: Vec::new(),
            fallbacks: Vec::new(),
            source: PathBuf::new(),
            index: Index::default(),
        }
    }

    /// The roster with its lookups built; every loader ends here. An id
    /// naming no volunteer cannot pass validation, and is left out if it did.
    fn indexed(mut self) -> Roster {
        let mut index = Index::default();
        for (i, v) in self.volunteers.iter().enumerate() {
            index.volunteer.entry(v.id.clone()).or_insert(i);
        }
        let pos = |id: &str| index.volunteer.get(id).copied();
        let mut station: HashMap<String, StationIndex> = HashMap::new();
        let mut replacing: HashMap<NaiveDate, Vec<(usize, usize)>> = HashMap::new();
        for (i, o) in self.overrides.iter().enumerate() {
            if let Some(v) = pos(&o.volunteer) {
                let st = station.entry(o.station.clone()).or_default();
                st.overrides.push((i, v));
            }
            if let Some(r) = o.replaces.as_deref().and_then(pos) {
                replacing.entry(o.date).or_default().push((i, r));
            }
        }
        for s in &self.shifts {
            if let Some(v) = pos(&s.volunteer) {
                station
                    .entry(s.station.clone())
                    .or_default()
                    .shifts
                    .push((Week::of(s), v));
            }
        }
        for f in &self.fallbacks {
            let st = station.entry(f.station.clone()).or_default();
            st.fallback
                .extend(f.volunteers.iter().filter_map(|id| pos(id)));
        }
        index.station = station;
        index.replacing = replacing;
        self.index = index;
        self
    }

    /// The volunteer with this id.
    pub fn volunteer(&self, id: &str) -> Option<&Volunteer> {
        self.index
            .volunteer
            .get(id)
            .and_then(|&i| self.volunteers.get(i))
    }

    /// The hunt list for `station` at instant `at`, in calling order:
    /// 1. the station's overrides, then shifts, covering that local time (file order);
    /// 2. the same for the duty desk;
    /// 3. the station's fallback volunteers, then the desk's.
    ///
    /// Nobody appears twice (the first position wins), and anyone an override in
    /// force `replaces` is left out, whatever the station: they are away.
    /// Costs the entries naming `station` and the desk, not the whole roster.
    pub fn hunt_list(&self, station: &str, at: DateTime<Utc>) -> Vec<&Volunteer> {
        let local = at.with_timezone(&self.timezone);
        let (date, day) = (local.date_naive(), local.weekday());
        // Minutes since local midnight; shifts are in whole minutes, so flooring is exact.
        let minute = (local.hour() * 60 + local.minute()) as u16;

        let none = StationIndex::default();
        let entries = |st: &str| self.index.station.get(st).unwrap_or(&none);
        let mut stations = vec![entries(station)];
        if station != DESK {
            stations.push(entries(DESK));
        }
        let mut seen = Seen::new(self.volunteers.len());
        // Whoever an override in force replaces is away: not called for anything.
        // An override in force started today, or yesterday and runs past midnight.
        for d in [Some(date), date.pred_opt()].into_iter().flatten() {
            for &(o, replaced) in self.index.replacing.get(&d).into_iter().flatten() {
                if self
                    .overrides
                    .get(o)
                    .is_some_and(|o| o.covers(date, minute))
                {
                    seen.insert(replaced);
                }
            }
        }
        let mut out = Vec::new();
        let mut call = |v: usize| {
            if seen.insert(v) {
                out.extend(self.volunteers.get(v));
            }
        };
        for st in &stations {
            for &(o, v) in &st.overrides {
                if self
                    .overrides
                    .get(o)
                    .is_some_and(|o| o.covers(date, minute))
                {
                    call(v);
                }
            }
            for &(week, v) in &st.shifts {
                if week.covers(day, minute) {
                    call(v);
                }
            }
        }
        for st in &stations {
            st.fallback.iter().for_each(|&v| call(v));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::path::Path;

    use crate::config::{Config, Station};

    pub(crate) fn stations() -> Vec<Station> {
        Config::embedded_default().stations
    }

    pub(crate) fn roster(text: &str) -> Roster {
        match Roster::from_str(text, Path::new("roster.toml"), &stations()) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// A UTC instant from Shanghai local time (UTC+8, no DST).
    pub(crate) fn sh(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        DEFAULT_TIMEZONE
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn ids(list: Vec<&Volunteer>) -> Vec<&str> {
        list.into_iter().map(|v| v.id.as_str()).collect()
    }

    pub(crate) const TEST: &str = r#"
[[volunteer]]
id = "wang"
name = "王阿姨"
phone = "13800138000"
screen = true

[[volunteer]]
id = "li"
name = "李老师"
phone = "sip:1001@192.0.2.10:5060"

[[volunteer]]
id = "zhao"
name = "赵师傅"
phone = "+8613800138002"

[[volunteer]]
id = "chen"
name = "陈大姐"
phone = "13800138003"

[[shift]]
station = "health"
volunteer = "wang"
days = "weekdays"
start = "08:00"
end = "17:30"

[[shift]]
station = "health"
volunteer = "chen"
days = ["mon", "wed", "fri"]
start = "09:00"
end = "12:00"

[[shift]]
station = "desk"
volunteer = "li"
days = "daily"
start = "20:00"
end = "08:00"

[[shift]]
station = "desk"
volunteer = "wang"
days = ["fri"]
start = "12:00"
end = "24:00"

[[shift]]
station = "desk"
volunteer = "zhao"
days = "weekends"
start = "08:00"
end = "20:00"

[[override]]
date = "2026-12-01"
start = "08:00"
end = "12:00"
station = "health"
volunteer = "li"
replaces = "wang"

[[override]]
date = 2026-12-02
station = "health"
volunteer = "zhao"

[[fallback]]
station = "health"
volunteers = ["chen"]

[[fallback]]
station = "desk"
volunteers = ["zhao"]
"#;

    #[test]
    fn weekday_morning_station_then_fallbacks() {
        let r = roster(TEST);
        // Mon 2026-11-30 10:00: wang and chen on health, nobody at the desk.
        assert_eq!(
            ids(r.hunt_list("health", sh(2026, 11, 30, 10, 0))),
            ["wang", "chen", "zhao"]
        );
        // Tue: chen is not on shift but is the health fallback; zhao is the desk's.
        assert_eq!(
            ids(r.hunt_list("health", sh(2026, 12, 8, 10, 0))),
            ["wang", "chen", "zhao"]
        );
        assert_eq!(
            ids(r.hunt_list("health", sh(2026, 12, 8, 17, 29))),
            ["wang", "chen", "zhao"]
        );
        // 17:30 is the end, exclusive.
        assert_eq!(
            ids(r.hunt_list("health", sh(2026, 12, 8, 17, 30))),
            ["chen", "zhao"]
        );
    }

    #[test]
    fn desk_volunteers_are_appended_and_duplicates_removed() {
        let r = roster(TEST);
        // Fri 2026-12-04 15:00: wang on health and at the desk; she comes once, first.
        assert_eq!(
            ids(r.hunt_list("health", sh(2026, 12, 4, 15, 0))),
            ["wang", "chen", "zhao"]
        );
        // Fri 21:00: wang and li at the desk, for a station with no shift or fallback.
        assert_eq!(
            ids(r.hunt_list("party", sh(2026, 12, 4, 21, 0))),
            ["li", "wang", "zhao"]
        );
        // The desk itself: its own people and its own fallback.
        assert_eq!(
            ids(r.hunt_list("desk", sh(2026, 12, 4, 21, 0))),
            ["li", "wang", "zhao"]
        );
    }

    #[test]
    fn overnight_shift_covers_the_next_mornings_weekday() {
        let text = r#"
[[volunteer]]
id = "li"
name = "李老师"
phone = "1001"
[[shift]]
station = "desk"
volunteer = "li"
days = ["fri"]
start = "20:00"
end = "08:00"
"#;
        let r = roster(text);
        // Fri 2026-12-04 20:00 on; Sat 07:59 still on (Friday's shift); Sat 08:00 off.
        assert_eq!(ids(r.hunt_list("desk", sh(2026, 12, 4, 20, 0))), ["li"]);
        assert_eq!(ids(r.hunt_list("desk", sh(2026, 12, 5, 3, 0))), ["li"]);
        assert_eq!(ids(r.hunt_list("desk", sh(2026, 12, 5, 7, 59))), ["li"]);
        assert!(r.hunt_list("desk", sh(2026, 12, 5, 8, 0)).is_empty());
        // Friday's own early morning belongs to a Thursday shift, which there is none of.
        assert!(r.hunt_list("desk", sh(2026, 12, 4, 3, 0)).is_empty());
        assert!(r.hunt_list("desk", sh(2026, 12, 5, 20, 0)).is_empty());
    }

    #[test]
    fn weekend_uses_weekend_desk() {
        let r = roster(TEST);
        // Sat 2026-12-05 10:00: no health shift; zhao at the desk, chen the fallback.
        assert_eq!(
            ids(r.hunt_list("health", sh(2026, 12, 5, 10, 0))),
            ["zhao", "chen"]
        );
        // Sun 2026-12-06 23:00: li overnight at the desk.
        assert_eq!(
            ids(r.hunt_list("culture", sh(2026, 12, 6, 23, 0))),
            ["li", "zhao"]
        );
    }

    #[test]
    fn override_goes_first_and_can_replace() {
        let r = roster(TEST);
        // Tue 2026-12-01 09:00: li covers for wang (in hospital) until 12:00.
        assert_eq!(
            ids(r.hunt_list("health", sh(2026, 12, 1, 9, 0))),
            ["li", "chen", "zhao"]
        );
        // After the cover, wang is back.
        assert_eq!(
            ids(r.hunt_list("health", sh(2026, 12, 1, 12, 0))),
            ["wang", "chen", "zhao"]
        );
        // A whole-day override (no start/end) adds zhao at the top on Wed 2026-12-02.
        assert_eq!(
            ids(r.hunt_list("health", sh(2026, 12, 2, 10, 0))),
            ["zhao", "wang", "chen"]
        );
        assert_eq!(
            ids(r.hunt_list("health", sh(2026, 12, 2, 23, 59))),
            ["zhao", "li", "chen"]
        );
        // Only on that date.
        assert_eq!(
            ids(r.hunt_list("health", sh(2026, 12, 9, 10, 0))),
            ["wang", "chen", "zhao"]
        );
    }

    #[test]
    fn replaced_volunteer_is_not_called_anywhere_meanwhile() {
        let text = r#"
[[volunteer]]
id = "wang"
name = "王阿姨"
phone = "13800138000"
[[volunteer]]
id = "li"
name = "李老师"
phone = "1001"
[[shift]]
station = "desk"
volunteer = "wang"
days = "daily"
start = "08:00"
end = "12:00"
[[override]]
date = "2026-12-01"
station = "health"
volunteer = "li"
replaces = "wang"
"#;
        let r = roster(text);
        assert_eq!(ids(r.hunt_list("health", sh(2026, 12, 1, 9, 0))), ["li"]);
        assert!(r.hunt_list("desk", sh(2026, 12, 1, 9, 0)).is_empty());
        assert_eq!(ids(r.hunt_list("desk", sh(2026, 12, 2, 9, 0))), ["wang"]);
    }

    #[test]
    fn timezone_shanghai_0800_is_0000_utc() {
        let r = roster(TEST);
        let at = Utc.with_ymd_and_hms(2026, 12, 8, 0, 0, 0).unwrap();
        assert_eq!(at, sh(2026, 12, 8, 8, 0));
        assert_eq!(ids(r.hunt_list("health", at)), ["wang", "chen", "zhao"]);
        // One second earlier is 07:59:59 local: li's overnight desk shift.
        let before = at - chrono::Duration::seconds(1);
        assert_eq!(ids(r.hunt_list("health", before)), ["li", "chen", "zhao"]);
    }

    #[test]
    fn other_timezone_is_honoured() {
        let text = r#"
timezone = "Europe/London"
[[volunteer]]
id = "li"
name = "Li"
phone = "1001"
[[shift]]
station = "desk"
volunteer = "li"
days = "daily"
start = "08:00"
end = "09:00"
"#;
        let r = roster(text);
        assert_eq!(r.timezone, chrono_tz::Europe::London);
        // Summer: 08:00 London = 07:00 UTC.
        let summer = Utc.with_ymd_and_hms(2026, 7, 1, 7, 30, 0).unwrap();
        assert_eq!(ids(r.hunt_list("desk", summer)), ["li"]);
        let winter = Utc.with_ymd_and_hms(2026, 12, 1, 8, 30, 0).unwrap();
        assert_eq!(ids(r.hunt_list("desk", winter)), ["li"]);
        assert!(r
            .hunt_list("desk", summer + chrono::Duration::hours(1))
            .is_empty());
    }

    #[test]
    fn empty_roster_has_nobody() {
        let r = Roster::empty();
        assert!(r.hunt_list("health", sh(2026, 12, 1, 9, 0)).is_empty());
        let from_empty_file = roster("");
        assert_eq!(from_empty_file.source, Path::new("roster.toml"));
        assert_eq!(
            Roster {
                source: PathBuf::new(),
                ..from_empty_file
            },
            r
        );
    }

    /// The hunt order as the specification above reads, written the obvious
    /// way (every entry of the roster scanned): the oracle for the indexed
    /// [`Roster::hunt_list`].
    fn hunt_list_by_scanning<'r>(r: &'r Roster, station: &str, at: DateTime<Utc>) -> Vec<&'r str> {
        let local = at.with_timezone(&r.timezone);
        let (date, day) = (local.date_naive(), local.weekday());
        let minute = (local.hour() * 60 + local.minute()) as u16;
        let away: Vec<&str> = r
            .overrides
            .iter()
            .filter(|o| o.covers(date, minute))
            .filter_map(|o| o.replaces.as_deref())
            .collect();
        let stations: Vec<&str> = if station == DESK {
            vec![DESK]
        } else {
            vec![station, DESK]
        };
        let mut ids: Vec<&str> = Vec::new();
        for st in &stations {
            ids.extend(
                r.overrides
                    .iter()
                    .filter(|o| o.station == *st && o.covers(date, minute))
                    .map(|o| o.volunteer.as_str()),
            );
            ids.extend(
                r.shifts
                    .iter()
                    .filter(|s| s.station == *st && s.covers(day, minute))
                    .map(|s| s.volunteer.as_str()),
            );
        }
        for st in &stations {
            for f in r.fallbacks.iter().filter(|f| f.station == *st) {
                ids.extend(f.volunteers.iter().map(String::as_str));
            }
        }
        let mut seen: std::collections::HashSet<&str> = away.into_iter().collect();
        ids.into_iter().filter(|id| seen.insert(id)).collect()
    }

    /// 10,000 volunteers over three stations, overnight and day shifts, a
    /// cover (replacing someone) for every 50th, fallbacks repeating people
    /// already on duty.
    fn district_roster() -> Roster {
        let id = |i: usize| format!("v{i:05}");
        let t = |h, m| TimeOfDay::new(h, m).unwrap();
        let weekdays = vec![
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
        ];
        let daily = [weekdays.clone(), vec![Weekday::Sat, Weekday::Sun]].concat();
        let mut r = Roster::empty();
        for i in 0..10_000 {
            r.volunteers.push(Volunteer {
                id: id(i),
                name: format!("volunteer {i}"),
                phone: Phone::Number(format!("1380013{i:04}")),
                screen: false,
                srtp: false,
            });
            let (start, end) = if i % 5 == 0 {
                (t(20, 0), t(8, 0))
            } else {
                (t(8, 0), t(17, 0))
            };
            r.shifts.push(Shift {
                station: ["health", DESK, "culture"][i % 3].to_string(),
                volunteer: id(i),
                days: if i % 2 == 0 {
                    weekdays.clone()
                } else {
                    daily.clone()
                },
                start,
                end,
            });
        }
        for i in (0..10_000).step_by(50) {
            r.overrides.push(Override {
                date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
                start: t(0, 0),
                end: t(24, 0),
                station: "health".into(),
                volunteer: id(i + 1),
                replaces: Some(id(i + 3)),
            });
        }
        r.fallbacks.push(Fallback {
            station: "health".into(),
            volunteers: vec![id(9_999), id(0), id(3), id(6)],
        });
        r.fallbacks.push(Fallback {
            station: DESK.into(),
            volunteers: vec![id(1), id(9_998)],
        });
        r.indexed()
    }

    #[test]
    fn ten_thousand_volunteer_roster_hunts_in_the_specified_order() {
        let r = district_roster();
        // Tue 2026-12-01 10:00: the covers, health's day shifts, the desk's, fallbacks.
        let at = sh(2026, 12, 1, 10, 0);
        let list = ids(r.hunt_list("health", at));
        assert_eq!(list, hunt_list_by_scanning(&r, "health", at));
        assert_eq!(&list[..3], ["v00001", "v00051", "v00101"]);
        // 200 covers, then health (i % 3 == 0) and desk (i % 3 == 1) day shifts
        // (i % 5 != 0), less the 200 replaced and the covers already listed.
        let day_shift = |i: usize| !i.is_multiple_of(5) && i % 3 != 2;
        let replaced = |i: usize| i % 50 == 3;
        let cover = |i: usize| i % 50 == 1;
        let on_shift = (0..10_000)
            .filter(|&i| day_shift(i) && !replaced(i) && !cover(i))
            .count();
        // Fallbacks: v00000 (overnight) and v09998 (culture) are new; v09999
        // and v00006 are on shift, v00003 replaced, v00001 a cover.
        assert_eq!(list.len(), 200 + on_shift + 2);
        assert_eq!(&list[list.len() - 2..], ["v00000", "v09998"]);
        assert!(!list.contains(&"v00003"), "replaced: away all day");
        // Another day and hour, and the desk itself.
        for (station, at) in [
            ("health", sh(2026, 12, 2, 3, 0)),
            (DESK, sh(2026, 12, 5, 12, 0)),
            ("culture", sh(2026, 12, 2, 7, 59)),
            ("party", sh(2026, 12, 1, 23, 0)),
        ] {
            assert_eq!(
                ids(r.hunt_list(station, at)),
                hunt_list_by_scanning(&r, station, at),
                "{station}"
            );
        }
        assert_eq!(
            r.volunteer("v09999").map(|v| v.name.as_str()),
            Some("volunteer 9999")
        );
        assert!(r.volunteer("v10000").is_none());
    }

    #[test]
    fn phone_sip_uri() {
        assert_eq!(
            Phone::Number("13800138000".into()).sip_uri("trunk.example"),
            "sip:13800138000@trunk.example"
        );
        assert_eq!(
            Phone::Uri("sip:1001@127.0.0.1:5070".into()).sip_uri("trunk.example"),
            "sip:1001@127.0.0.1:5070"
        );
    }

    #[test]
    fn time_of_day_bounds() {
        assert_eq!(TimeOfDay::new(24, 0).map(|t| t.minutes()), Some(1440));
        assert_eq!(TimeOfDay::new(24, 1), None);
        assert_eq!(TimeOfDay::new(8, 60), None);
        assert_eq!(TimeOfDay::new(8, 5).unwrap().to_string(), "08:05");
    }
}
