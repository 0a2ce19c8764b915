//! Which volunteers the daemon can actually call with a given configuration: a
//! phone number needs a `[trunk]`, an `srtp = true` volunteer needs a TLS phone
//! (unless `[sip] sdes_over_plain`). `hotline check` warns of the others and
//! `hotline run` lists them at start; the hunt skips them per call.

use chrono::{DateTime, Utc};

use super::{Phone, Roster, Volunteer};
use crate::config::{Config, Station};

/// What the configuration lets the daemon dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    /// A `[trunk]` is configured: phone numbers can be called.
    pub trunk: bool,
    /// `[sip] sdes_over_plain`: SRTP keys may travel over plain SIP.
    pub sdes_over_plain: bool,
}

impl Reach {
    /// What `config` lets the daemon dial.
    pub fn of(config: &Config) -> Reach {
        Reach {
            trunk: config.trunk.is_some(),
            sdes_over_plain: config.sip.sdes_over_plain,
        }
    }

    /// Why `v` cannot be called, in words for the admin; None if they can.
    pub fn why_not(self, v: &Volunteer) -> Option<&'static str> {
        let tls = match &v.phone {
            Phone::Number(_) if !self.trunk => {
                return Some("a phone number, but no [trunk] is configured to call it through")
            }
            Phone::Number(_) => false,
            Phone::Uri(uri) => is_tls_uri(uri),
        };
        if v.srtp && !self.sdes_over_plain && !tls {
            return Some(
                "srtp = true, but the phone is not a sips: (or ;transport=tls) URI \
                 and [sip] sdes_over_plain is off",
            );
        }
        None
    }
}

/// Whether an INVITE to `uri` goes over TLS: `sips:` (RFC 3261 section 19.1) or
/// an explicit `;transport=tls`.
pub(crate) fn is_tls_uri(uri: &str) -> bool {
    let uri = uri.trim_start_matches('<').to_ascii_lowercase();
    uri.starts_with("sips:") || uri.contains(";transport=tls")
}

/// One station's hunt list at a moment, with whether each can be called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationReach<'a> {
    pub station: &'a Station,
    /// In calling order; the reason when that volunteer cannot be called.
    pub hunt: Vec<(&'a Volunteer, Option<&'static str>)>,
}

impl StationReach<'_> {
    /// Somebody on the list can be called.
    pub fn reachable(&self) -> bool {
        self.hunt.iter().any(|(_, why)| why.is_none())
    }
}

impl Roster {
    /// The volunteers who cannot be called at all, in file order, with why.
    pub fn unreachable(&self, reach: Reach) -> Vec<(&Volunteer, &'static str)> {
        self.volunteers
            .iter()
            .filter_map(|v| reach.why_not(v).map(|why| (v, why)))
            .collect()
    }

    /// For each station, whom a call at `at` would ring and who of them can be called.
    pub fn reach_at<'a>(
        &'a self,
        stations: &'a [Station],
        at: DateTime<Utc>,
        reach: Reach,
    ) -> Vec<StationReach<'a>> {
        stations
            .iter()
            .map(|station| StationReach {
                station,
                hunt: self
                    .hunt_list(&station.id, at)
                    .into_iter()
                    .map(|v| (v, reach.why_not(v)))
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::tests::{roster, sh, stations};

    const TEXT: &str = r#"
timezone = "Asia/Shanghai"
[[volunteer]]
id = "wang"
name = "王阿姨"
phone = "13800138001"
[[volunteer]]
id = "li"
name = "李老师"
phone = "sip:1001@127.0.0.1:5070"
[[volunteer]]
id = "qian"
name = "钱"
phone = "sip:1002@127.0.0.1:5071"
srtp = true
[[volunteer]]
id = "zhou"
name = "周"
phone = "sips:1003@127.0.0.1:5061"
srtp = true
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

    const NO_TRUNK: Reach = Reach {
        trunk: false,
        sdes_over_plain: false,
    };

    #[test]
    fn numbers_need_a_trunk_and_srtp_needs_tls() {
        let r = roster(TEXT);
        let ids = |reach| -> Vec<&str> {
            r.unreachable(reach)
                .iter()
                .map(|(v, _)| v.id.as_str())
                .collect()
        };
        assert_eq!(ids(NO_TRUNK), ["wang", "qian"]);
        let why = r.unreachable(NO_TRUNK)[0].1;
        assert!(why.contains("no [trunk]"), "{why}");
        let with_trunk = Reach {
            trunk: true,
            ..NO_TRUNK
        };
        assert_eq!(ids(with_trunk), ["qian"]);
        let plain_ok = Reach {
            trunk: true,
            sdes_over_plain: true,
        };
        assert!(ids(plain_ok).is_empty());
        assert!(is_tls_uri("<sip:1@h;transport=TLS>") && !is_tls_uri("sip:1@h"));
    }

    #[test]
    fn reach_at_marks_who_on_duty_can_be_called() {
        let r = roster(TEXT);
        let st = stations();
        // 09:00 Shanghai (01:00 UTC): wang (a number) for health, nobody for the desk.
        let morning = r.reach_at(&st, sh(2026, 12, 2, 9, 0), NO_TRUNK);
        let health = morning.iter().find(|s| s.station.id == "health").unwrap();
        assert_eq!(health.hunt.len(), 1);
        assert!(!health.reachable());
        // 15:00: li at the desk backs up health.
        let afternoon = r.reach_at(&st, sh(2026, 12, 2, 15, 0), NO_TRUNK);
        let health = afternoon.iter().find(|s| s.station.id == "health").unwrap();
        assert_eq!(health.hunt[0].0.id, "li");
        assert!(health.reachable());
    }
}
