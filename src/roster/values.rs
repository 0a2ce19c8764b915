//! The value syntaxes of `roster.toml` (phones, times, dates, days) and the
//! minute arithmetic that the overlap checks and the gap report share.

use std::ops::Range;

use chrono::{NaiveDate, Weekday};
use toml::Value;

use super::{Override, Phone, Shift, TimeOfDay};

/// `"13800138000"`, `"+8613800138000"` or a `sip:`/`sips:` URI `user@host[:port][;params]`.
pub(super) fn parse_phone(s: &str) -> Result<Phone, String> {
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
pub(super) fn parse_time(s: &str) -> Result<TimeOfDay, ()> {
    let (h, m) = s.trim().split_once(':').ok_or(())?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(());
    }
    let h: u16 = h.parse().map_err(|_| ())?;
    let m: u16 = m.parse().map_err(|_| ())?;
    TimeOfDay::new(h, m).ok_or(())
}

/// `"2026-12-01"` or a TOML local date.
pub(super) fn parse_date(v: &Value) -> Option<NaiveDate> {
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
pub(super) fn parse_days(v: &Value) -> Result<Vec<Weekday>, String> {
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
pub(super) fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Minutes in a day and in a week (Monday 00:00 = 0), for the arithmetic below
/// and the gap report.
pub(super) const DAY: u32 = super::DAY_MINUTES as u32;
pub(super) const WEEK: u32 = 7 * DAY;

/// The minutes of the week (Monday 00:00 = 0) a shift covers, wrapped at Sunday midnight.
pub(super) fn weekly_minutes(s: &Shift) -> Vec<Range<u32>> {
    let (start, end) = (u32::from(s.start.minutes()), u32::from(s.end.minutes()));
    let len = if start < end {
        end - start
    } else {
        end + DAY - start
    };
    let mut out = Vec::new();
    for d in &s.days {
        let a = d.num_days_from_monday() * DAY + start;
        let b = a + len;
        if b <= WEEK {
            out.push(a..b);
        } else {
            out.push(a..WEEK);
            out.push(0..b - WEEK);
        }
    }
    out
}

pub(super) fn overlaps(a: &[Range<u32>], b: &[Range<u32>]) -> bool {
    a.iter()
        .any(|x| b.iter().any(|y| x.start < y.end && y.start < x.end))
}

/// An override's minutes since 1970-01-01 (local), for the overlap check.
pub(super) fn absolute_minutes(o: &Override) -> Range<i64> {
    let day = o
        .date
        .signed_duration_since(NaiveDate::default())
        .num_days()
        * i64::from(DAY);
    let (start, end) = (i64::from(o.start.minutes()), i64::from(o.end.minutes()));
    let end = if start < end {
        end
    } else {
        end + i64::from(DAY)
    };
    day + start..day + end
}
