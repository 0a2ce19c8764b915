//! The summary `hotline run` logs once at start, so the admin sees at a glance
//! what the daemon will do with a call: where it listens, where records go, the
//! trunk, each station's hunt list right now, and who cannot be called at all
//! (the same reasons `hotline check` warns of, from [`Reach`]).
//!
//! Building the lines is a pure function of the config, the roster and a UTC
//! instant; only [`log`] touches the logger.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::roster::{Reach, Roster};

/// Hunt-list entries shown per station; the rest are counted.
const SHOWN_PER_STATION: usize = 6;

/// Where the daemon took its sockets (the bound addresses, not the configured ones,
/// which may say port 0).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    pub(crate) sip: SocketAddr,
    pub(crate) tls: Option<SocketAddr>,
    pub(crate) admin: Option<SocketAddr>,
}

/// One line of the summary; `warn` lines are logged as warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) warn: bool,
    pub(crate) text: String,
}

fn info(text: String) -> Line {
    Line { warn: false, text }
}

fn warn(text: String) -> Line {
    Line { warn: true, text }
}

/// Log the summary: one event per line, all starting "start-up summary".
pub(crate) fn log(config: &Config, roster: &Roster, roster_loaded: bool, bound: Bound) {
    for line in lines(config, roster, roster_loaded, bound, Utc::now()) {
        if line.warn {
            tracing::warn!("start-up summary: {}", line.text);
        } else {
            tracing::info!("start-up summary: {}", line.text);
        }
    }
}

/// The summary's lines at `now`.
pub(crate) fn lines(
    config: &Config,
    roster: &Roster,
    roster_loaded: bool,
    bound: Bound,
    now: DateTime<Utc>,
) -> Vec<Line> {
    let mut out = Vec::new();
    let numbers = config.sip.numbers.join(", ");
    let tls = match bound.tls {
        Some(addr) => format!("TLS on {addr}"),
        None => "no TLS".to_string(),
    };
    let admin = match bound.admin {
        Some(addr) => format!("admin listener on http://{addr}"),
        None => "admin listener off".to_string(),
    };
    out.push(info(format!(
        "answering {numbers} on {} (UDP and TCP), {tls}; {admin}",
        bound.sip
    )));
    out.push(info(format!(
        "call records in {}; voicemail {}",
        redact_url(&config.database.url),
        if config.forward.voicemail {
            format!("on, in {}", config.forward.voicemail_dir.display())
        } else {
            "off (nobody reachable: \"no volunteer available\" and hang up)".to_string()
        }
    )));
    out.push(trunk_line(config));
    let local = now.with_timezone(&roster.timezone);
    let file = config.roster.file.display();
    if roster_loaded {
        out.push(info(format!(
            "roster {file}: {} volunteers, {} shifts; now is {} {}",
            roster.volunteers.len(),
            roster.shifts.len(),
            local.format("%a %Y-%m-%d %H:%M"),
            roster.timezone
        )));
    } else {
        out.push(warn(format!(
            "no roster file {file}: nobody is on duty, every call goes to {}",
            fate(config)
        )));
    }
    let reach = Reach::of(config);
    let unreachable = roster.unreachable(reach);
    for (v, why) in &unreachable {
        out.push(warn(format!(
            "volunteer {} ({}) {} cannot be called: {why}",
            v.id, v.name, v.phone
        )));
    }
    let mut nobody = Vec::new();
    for st in roster.reach_at(&config.stations, now, reach) {
        let mut names: Vec<String> = st
            .hunt
            .iter()
            .take(SHOWN_PER_STATION)
            .map(|(v, why)| match why {
                None => format!("{} ({})", v.name, v.id),
                Some(_) => format!("{} ({}, cannot be called)", v.name, v.id),
            })
            .collect();
        if st.hunt.len() > SHOWN_PER_STATION {
            names.push(format!("{} more", st.hunt.len() - SHOWN_PER_STATION));
        }
        let list = if names.is_empty() {
            "nobody on duty".to_string()
        } else {
            names.join(", then ")
        };
        out.push(info(format!(
            "key {} {} ({}): now rings {list}",
            st.station.key, st.station.id, st.station.name
        )));
        if !st.reachable() {
            nobody.push(st.station.id.as_str());
        }
    }
    if !nobody.is_empty() {
        out.push(warn(format!(
            "nobody can be reached now for {}: a call there goes to {}",
            nobody.join(", "),
            fate(config)
        )));
    }
    out
}

/// What happens to a call nobody can take.
fn fate(config: &Config) -> &'static str {
    if config.forward.voicemail {
        "voicemail"
    } else {
        "\"no volunteer available\""
    }
}

fn trunk_line(config: &Config) -> Line {
    match &config.trunk {
        None => info(
            "no [trunk]: volunteers with phone numbers cannot be called, only SIP URIs".to_string(),
        ),
        Some(t) if t.register => info(format!(
            "trunk {} (numbers as sip:N@{}): registering as {}; the result is logged",
            t.proxy,
            t.domain,
            t.username.as_deref().unwrap_or("(no username)")
        )),
        Some(t) => info(format!(
            "trunk {} (numbers as sip:N@{}), no registration",
            t.proxy, t.domain
        )),
    }
}

/// A database URL without its password: `postgres://u:secret@h/db` gives
/// `postgres://u:***@h/db`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::path::Path;

    const ROSTER: &str = r#"
timezone = "Asia/Shanghai"
[[volunteer]]
id = "wang"
name = "王阿姨"
phone = "13800138001"
[[volunteer]]
id = "li"
name = "李老师"
phone = "sip:1001@127.0.0.1:5070"
[[shift]]
station = "health"
volunteer = "wang"
days = "daily"
start = "08:00"
end = "12:00"
[[shift]]
station = "desk"
volunteer = "li"
days = "daily"
start = "14:00"
end = "18:00"
"#;

    fn bound() -> Bound {
        Bound {
            sip: "127.0.0.1:5060".parse().unwrap(),
            tls: None,
            admin: Some("127.0.0.1:8110".parse().unwrap()),
        }
    }

    fn at(h: u32) -> DateTime<Utc> {
        chrono_tz::Asia::Shanghai
            .with_ymd_and_hms(2026, 12, 2, h, 0, 0)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn texts(lines: &[Line], warn: bool) -> Vec<&str> {
        lines
            .iter()
            .filter(|l| l.warn == warn)
            .map(|l| l.text.as_str())
            .collect()
    }

    #[test]
    fn names_the_unreachable_and_the_stations_nobody_can_take() {
        let cfg = Config::embedded_default();
        let roster = Roster::from_str(ROSTER, Path::new("roster.toml"), &cfg.stations).unwrap();
        let lines = lines(&cfg, &roster, true, bound(), at(9));
        let info = texts(&lines, false);
        let warn = texts(&lines, true);
        assert!(
            info[0].contains("answering 6289110 on 127.0.0.1:5060"),
            "{info:?}"
        );
        assert!(info[0].contains("http://127.0.0.1:8110"), "{info:?}");
        assert!(
            info.iter().any(|l| l.contains("sqlite://data/hotline.db")),
            "{info:?}"
        );
        assert!(info.iter().any(|l| l.starts_with("no [trunk]")), "{info:?}");
        assert!(
            info.contains(
                &"key 2 health (健康咨询辅导站): now rings 王阿姨 (wang, cannot be called)"
            ),
            "{info:?}"
        );
        assert_eq!(
            warn,
            [
                "volunteer wang (王阿姨) 13800138001 cannot be called: a phone number, but no [trunk] is configured to call it through",
                "nobody can be reached now for property, health, counseling, assistance, culture, party, desk: a call there goes to voicemail",
            ]
        );
        // At 15:00 li is at the desk and backs up every station.
        let lines = super::lines(&cfg, &roster, true, bound(), at(15));
        assert_eq!(texts(&lines, true).len(), 1, "{lines:?}");
        assert!(texts(&lines, false)
            .iter()
            .any(|l| l.ends_with("now rings 李老师 (li)")));
    }

    #[test]
    fn no_roster_file_is_a_warning() {
        let cfg = Config::embedded_default();
        let lines = lines(&cfg, &Roster::empty(), false, bound(), at(9));
        assert!(texts(&lines, true)[0].starts_with("no roster file config/roster.toml"));
    }

    #[test]
    fn database_passwords_are_not_logged() {
        assert_eq!(
            redact_url("postgres://hot:s3cret@db:5432/hotline"),
            "postgres://hot:***@db:5432/hotline"
        );
        assert_eq!(
            redact_url("postgres://hot@db/hotline"),
            "postgres://hot@db/hotline"
        );
        assert_eq!(
            redact_url("sqlite://data/hotline.db"),
            "sqlite://data/hotline.db"
        );
    }
}
