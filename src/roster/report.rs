//! What the admin reads: coverage gaps for `hotline check`, the change summary
//! for the reload log line, and the on-duty table for `hotline on-duty`.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

use super::values::{weekly_minutes, DAY, WEEK};
use super::{Roster, Shift, Volunteer, DESK};
use crate::config::Station;

impl Roster {
    /// Warnings for `hotline check`: per station, the hours of a normal week when
    /// nobody (its shifts, the desk's, or a fallback) would be called, e.g.
    /// `"health: nobody on duty Sat 00:00-24:00, Sun 00:00-08:00"`. Exact to the
    /// minute; one-off overrides are not counted, they do not fill a weekly hole.
    pub fn gaps(&self, stations: &[Station]) -> Vec<String> {
        let mut out = Vec::new();
        for st in stations {
            let has_fallback = self
                .fallbacks
                .iter()
                .any(|f| (f.station == st.id || f.station == DESK) && !f.volunteers.is_empty());
            if has_fallback {
                continue;
            }
            let relevant: Vec<&Shift> = self
                .shifts
                .iter()
                .filter(|s| s.station == st.id || s.station == DESK)
                .collect();
            // Coverage only changes at shift edges and midnights (where we split the text).
            let mut edges: BTreeSet<u32> = (0..=7).map(|d| d * DAY).collect();
            for s in &relevant {
                for r in weekly_minutes(s) {
                    edges.insert(r.start);
                    edges.insert(r.end);
                }
            }
            let edges: Vec<u32> = edges.into_iter().collect();
            let mut holes: Vec<(u32, u32)> = Vec::new();
            for w in edges.windows(2) {
                let (a, b) = (w[0], w[1]);
                let day = weekday_at(a);
                let minute = (a % DAY) as u16;
                if !relevant.iter().any(|s| s.covers(day, minute)) {
                    holes.push((a, b));
                }
            }
            if holes.is_empty() {
                continue;
            }
            if holes.iter().map(|(a, b)| b - a).sum::<u32>() == WEEK {
                out.push(format!("{}: nobody on duty at any time", st.id));
                continue;
            }
            // Merge neighbours within a day (edges split them at every shift end).
            let mut merged: Vec<(u32, u32)> = Vec::new();
            for (a, b) in holes {
                match merged.last_mut() {
                    Some(last) if last.1 == a && a % DAY != 0 => last.1 = b,
                    _ => merged.push((a, b)),
                }
            }
            let ranges: Vec<String> = merged
                .iter()
                .map(|&(a, b)| {
                    let day = weekday_at(a);
                    let (sa, sb) = (a % DAY, b - (a - a % DAY));
                    format!(
                        "{day} {:02}:{:02}-{:02}:{:02}",
                        sa / 60,
                        sa % 60,
                        sb / 60,
                        sb % 60
                    )
                })
                .collect();
            out.push(format!("{}: nobody on duty {}", st.id, ranges.join(", ")));
        }
        out
    }

    /// What changed from `old` to `self`, one item per kind of change, for the
    /// reload log line. Empty when nothing did.
    pub fn diff(&self, old: &Roster) -> Vec<String> {
        let mut out = Vec::new();
        if self.timezone != old.timezone {
            out.push(format!("timezone {} -> {}", old.timezone, self.timezone));
        }
        for v in &self.volunteers {
            match old.volunteer(&v.id) {
                None => out.push(format!("volunteer added: {}", who(v))),
                Some(o) => {
                    let mut what = Vec::new();
                    if o.name != v.name {
                        what.push(format!("name {} -> {}", o.name, v.name));
                    }
                    if o.phone != v.phone {
                        what.push(format!("phone {} -> {}", o.phone, v.phone));
                    }
                    if o.screen != v.screen {
                        what.push(format!("screen {} -> {}", o.screen, v.screen));
                    }
                    if o.srtp != v.srtp {
                        what.push(format!("srtp {} -> {}", o.srtp, v.srtp));
                    }
                    if !what.is_empty() {
                        out.push(format!("volunteer {} changed: {}", v.id, what.join(", ")));
                    }
                }
            }
        }
        for o in &old.volunteers {
            if self.volunteer(&o.id).is_none() {
                out.push(format!("volunteer removed: {}", who(o)));
            }
        }
        let counts = |kind: &str, added: usize, removed: usize, out: &mut Vec<String>| {
            // An entry that left and came back edited counts once as changed.
            let changed = added.min(removed);
            let parts: Vec<String> = [
                (added - changed, "added"),
                (removed - changed, "removed"),
                (changed, "changed"),
            ]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, w)| format!("{n} {w}"))
            .collect();
            if !parts.is_empty() {
                out.push(format!("{kind}: {}", parts.join(", ")));
            }
        };
        let (a, r) = set_diff(&self.shifts, &old.shifts);
        counts("shifts", a, r, &mut out);
        let (a, r) = set_diff(&self.overrides, &old.overrides);
        counts("overrides", a, r, &mut out);
        let (a, r) = set_diff(&self.fallbacks, &old.fallbacks);
        counts("fallbacks", a, r, &mut out);
        out
    }
}

/// How many of `new` are not in `old`, and of `old` not in `new` (as multisets).
fn set_diff<T: Hash + Eq>(new: &[T], old: &[T]) -> (usize, usize) {
    let mut unmatched: HashMap<&T, usize> = HashMap::new();
    for o in old {
        *unmatched.entry(o).or_default() += 1;
    }
    let mut added = 0;
    for n in new {
        match unmatched.get_mut(n) {
            Some(count) if *count > 0 => *count -= 1,
            _ => added += 1,
        }
    }
    (added, unmatched.values().sum())
}

fn who(v: &Volunteer) -> String {
    format!("{} ({}) {}", v.name, v.id, v.phone)
}

fn weekday_at(week_minute: u32) -> Weekday {
    let mut d = Weekday::Mon;
    for _ in 0..(week_minute / DAY) % 7 {
        d = d.succ();
    }
    d
}

/// The table for `hotline on-duty [--at TIME] [--station ID]`: for each station
/// (or only `only`), its hunt list at `at`, numbered in calling order.
pub fn format_on_duty(
    roster: &Roster,
    stations: &[Station],
    at: DateTime<Utc>,
    only: Option<&str>,
) -> String {
    let local = at.with_timezone(&roster.timezone);
    let mut out = format!(
        "On duty at {} ({}):\n",
        local.format("%Y-%m-%d %H:%M %a"),
        roster.timezone
    );
    let chosen: Vec<&Station> = stations
        .iter()
        .filter(|s| only.is_none_or(|id| s.id == id))
        .collect();
    if chosen.is_empty() {
        let ids: Vec<&str> = stations.iter().map(|s| s.id.as_str()).collect();
        out.push_str(&format!(
            "no station {:?}; stations: {}\n",
            only.unwrap_or(""),
            ids.join(", ")
        ));
        return out;
    }
    for st in chosen {
        out.push_str(&format!("\n[{}] {} {}\n", st.key, st.id, st.name));
        let list = roster.hunt_list(&st.id, at);
        if list.is_empty() {
            out.push_str("   nobody on duty\n");
        }
        for (i, v) in list.iter().enumerate() {
            out.push_str(&format!("  {}. {} ({}) {}", i + 1, v.name, v.id, v.phone));
            if v.screen {
                out.push_str(" [screen]");
            }
            if v.srtp {
                out.push_str(" [srtp]");
            }
            out.push('\n');
        }
    }
    out
}

/// Parses `--at`: `"2026-12-01 09:30"` (or with `T`, or seconds) in the roster's
/// local time, or an RFC 3339 instant such as `"2026-12-01T01:30:00Z"`.
pub fn parse_at(s: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let local = [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .ok_or_else(|| {
        format!(
            "expected a time like \"2026-12-01 09:30\" ({tz} local) \
                 or \"2026-12-01T01:30:00Z\", found {s:?}"
        )
    })?;
    // In a DST fold take the earlier instant; in a gap the time does not exist.
    tz.from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("{s:?} does not exist in {tz} (clocks go forward)"))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{roster, sh, stations, TEST};
    use super::*;

    const TWO: &str = "[[volunteer]]\nid = \"wang\"\nname = \"王阿姨\"\nphone = \"13800138000\"\n\
                       [[volunteer]]\nid = \"li\"\nname = \"李老师\"\nphone = \"1001\"\n";

    #[test]
    fn gaps_found_for_a_roster_with_holes() {
        let r = roster(&format!(
            "{TWO}[[shift]]\nstation = \"health\"\nvolunteer = \"wang\"\ndays = \"weekdays\"\nstart = \"08:00\"\nend = \"17:30\"\n\
             [[shift]]\nstation = \"desk\"\nvolunteer = \"li\"\ndays = \"mon-fri\"\nstart = \"17:00\"\nend = \"08:00\"\n"
        ));
        let gaps = r.gaps(&stations());
        assert_eq!(
            gaps.iter()
                .find(|g| g.starts_with("health"))
                .map(String::as_str),
            Some("health: nobody on duty Mon 00:00-08:00, Sat 08:00-24:00, Sun 00:00-24:00")
        );
        // The desk covers every other station on weekday evenings, not their days.
        assert_eq!(
            gaps.iter()
                .find(|g| g.starts_with("party"))
                .map(String::as_str),
            Some(
                "party: nobody on duty Mon 00:00-17:00, Tue 08:00-17:00, Wed 08:00-17:00, \
                 Thu 08:00-17:00, Fri 08:00-17:00, Sat 08:00-24:00, Sun 00:00-24:00"
            )
        );
        assert_eq!(gaps.len(), 7, "{gaps:#?}");
    }

    #[test]
    fn no_gaps_with_full_cover_or_a_fallback() {
        let full = roster(&format!(
            "{TWO}[[shift]]\nstation = \"desk\"\nvolunteer = \"li\"\ndays = \"daily\"\nstart = \"00:00\"\nend = \"24:00\"\n"
        ));
        assert!(full.gaps(&stations()).is_empty());
        let fb = roster(&format!(
            "{TWO}[[fallback]]\nstation = \"desk\"\nvolunteers = [\"wang\"]\n"
        ));
        assert!(fb.gaps(&stations()).is_empty());
        let none = Roster::empty().gaps(&stations());
        assert_eq!(none.len(), 7);
        assert_eq!(none[0], "property: nobody on duty at any time");
    }

    #[test]
    fn diff_reports_added_volunteer_and_changed_phone() {
        let old = roster(TWO);
        let new = roster(&format!(
            "{}[[volunteer]]\nid = \"zhao\"\nname = \"赵师傅\"\nphone = \"13800138002\"\n\
             [[shift]]\nstation = \"desk\"\nvolunteer = \"zhao\"\ndays = \"daily\"\nstart = \"08:00\"\nend = \"20:00\"\n",
            TWO.replace("\"1001\"", "\"sip:1001@127.0.0.1:5070\"")
        ));
        assert_eq!(
            new.diff(&old),
            [
                "volunteer li changed: phone 1001 -> sip:1001@127.0.0.1:5070",
                "volunteer added: 赵师傅 (zhao) 13800138002",
                "shifts: 1 added",
            ]
        );
        assert_eq!(
            old.diff(&new),
            [
                "volunteer li changed: phone sip:1001@127.0.0.1:5070 -> 1001",
                "volunteer removed: 赵师傅 (zhao) 13800138002",
                "shifts: 1 removed",
            ]
        );
        assert!(new.diff(&new).is_empty());
    }

    #[test]
    fn diff_counts_edited_shifts_and_overrides() {
        let old = roster(TEST);
        let text = TEST
            .replacen("end = \"17:30\"", "end = \"18:00\"", 1)
            .replacen("date = 2026-12-02", "date = 2026-12-03", 1);
        let new = roster(&text);
        assert_eq!(
            new.diff(&old),
            ["shifts: 1 changed", "overrides: 1 changed"]
        );
    }

    #[test]
    fn on_duty_table() {
        let r = roster(TEST);
        let text = format_on_duty(&r, &stations(), sh(2026, 12, 1, 9, 0), Some("health"));
        assert_eq!(
            text,
            "On duty at 2026-12-01 09:00 Tue (Asia/Shanghai):\n\
             \n[2] health 健康咨询辅导站\n\
             \x20 1. 李老师 (li) sip:1001@192.0.2.10:5060\n\
             \x20 2. 陈大姐 (chen) 13800138003\n\
             \x20 3. 赵师傅 (zhao) +8613800138002\n"
        );
        let all = format_on_duty(&r, &stations(), sh(2026, 12, 8, 10, 0), None);
        assert!(
            all.contains("\n[0] desk 值班接待\n  1. 赵师傅 (zhao)"),
            "{all}"
        );
        assert!(
            all.contains("  1. 王阿姨 (wang) 13800138000 [screen]\n"),
            "{all}"
        );
        assert_eq!(all.matches("\n[").count(), 7, "{all}");
        let empty = format_on_duty(
            &Roster::empty(),
            &stations(),
            sh(2026, 12, 8, 10, 0),
            Some("desk"),
        );
        assert!(
            empty.ends_with("[0] desk 值班接待\n   nobody on duty\n"),
            "{empty}"
        );
        let unknown = format_on_duty(&r, &stations(), sh(2026, 12, 8, 10, 0), Some("helth"));
        assert!(
            unknown.contains("no station \"helth\"; stations: property, health"),
            "{unknown}"
        );
    }

    #[test]
    fn parse_at_local_and_rfc3339() {
        let tz = chrono_tz::Asia::Shanghai;
        assert_eq!(parse_at("2026-12-01 09:30", tz), Ok(sh(2026, 12, 1, 9, 30)));
        assert_eq!(
            parse_at("2026-12-01T09:30:00", tz),
            Ok(sh(2026, 12, 1, 9, 30))
        );
        assert_eq!(
            parse_at("2026-12-01T01:30:00Z", tz),
            Ok(sh(2026, 12, 1, 9, 30))
        );
        assert_eq!(
            parse_at("2026-12-01T09:30:00+08:00", chrono_tz::UTC),
            Ok(sh(2026, 12, 1, 9, 30))
        );
        assert!(parse_at("tomorrow", tz)
            .unwrap_err()
            .contains("expected a time"));
        // 02:30 on the spring-forward night does not exist in London.
        assert!(parse_at("2026-03-29 01:30", chrono_tz::Europe::London).is_err());
    }
}
