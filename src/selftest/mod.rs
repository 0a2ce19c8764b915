//! `hotline selftest`: a real call to the running daemon for each station's key,
//! which the daemon answers with the hunt list it would use, ringing nobody.
//!
//! - this file is the wire format both sides share, without I/O: the request header
//!   that marks a self-test call and who may send it ([`authorise`]), and the headers
//!   of the BYE that carries the answer ([`Answer`]);
//! - [`client`] places the calls with our own SIP stack and prints the result.
//!
//! The daemon's side is in `call::flow` (run the menu, then report instead of
//! forwarding) and `server` (recognise the call).

pub mod client;

use std::net::IpAddr;

use ipnet::IpNet;

/// On the INVITE: this is a self-test call; its value is `[selftest] token` (or
/// anything, without a token).
pub const SELFTEST_HEADER: &str = "X-Hotline-Selftest";
/// On the BYE: the station the menu chose.
pub const STATION_HEADER: &str = "X-Hotline-Station";
/// On the BYE: the volunteers the hunt would ring, in order, comma-separated;
/// empty when nobody is reachable.
pub const HUNT_HEADER: &str = "X-Hotline-Hunt";
/// On the BYE: the trunk's registration, [`TrunkState`].
pub const TRUNK_HEADER: &str = "X-Hotline-Trunk";

/// The trunk as a self-test reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkState {
    /// `[trunk] register = true` and registered now.
    Registered,
    /// `[trunk] register = true` but not registered now (refused, unreachable,
    /// or not yet).
    Failed,
    /// Nothing to check: no `[trunk]`, or one that does not register.
    None,
}

impl TrunkState {
    pub fn as_str(self) -> &'static str {
        match self {
            TrunkState::Registered => "registered",
            TrunkState::Failed => "failed",
            TrunkState::None => "none",
        }
    }

    fn parse(s: &str) -> Option<TrunkState> {
        match s.trim().to_ascii_lowercase().as_str() {
            "registered" => Some(TrunkState::Registered),
            "failed" => Some(TrunkState::Failed),
            "none" => Some(TrunkState::None),
            _ => None,
        }
    }
}

/// What the daemon answers a self-test call with, in its BYE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The station id the menu chose.
    pub station: String,
    /// Volunteer ids in the order the hunt would ring them; empty: nobody reachable.
    pub hunt: Vec<String>,
    pub trunk: TrunkState,
}

impl Answer {
    /// The BYE's headers, as (name, value).
    pub fn to_headers(&self) -> Vec<(String, String)> {
        vec![
            (STATION_HEADER.into(), self.station.clone()),
            (HUNT_HEADER.into(), self.hunt.join(", ")),
            (TRUNK_HEADER.into(), self.trunk.as_str().into()),
        ]
    }

    /// Read the answer from a BYE's headers (names in any case). Err names what is
    /// missing or unreadable.
    pub fn from_headers<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Answer, String> {
        let (mut station, mut hunt, mut trunk) = (None, None, None);
        for (name, value) in headers {
            let value = value.trim();
            if name.eq_ignore_ascii_case(STATION_HEADER) {
                station = Some(value.to_string());
            } else if name.eq_ignore_ascii_case(HUNT_HEADER) {
                let ids = value.split(',').map(str::trim).filter(|v| !v.is_empty());
                hunt = Some(ids.map(String::from).collect());
            } else if name.eq_ignore_ascii_case(TRUNK_HEADER) {
                trunk = Some(
                    TrunkState::parse(value)
                        .ok_or_else(|| format!("{TRUNK_HEADER}: unknown state {value:?}"))?,
                );
            }
        }
        let missing = |h: &str| format!("the daemon's BYE has no {h} header");
        Ok(Answer {
            station: station
                .filter(|s| !s.is_empty())
                .ok_or_else(|| missing(STATION_HEADER))?,
            hunt: hunt.ok_or_else(|| missing(HUNT_HEADER))?,
            trunk: trunk.ok_or_else(|| missing(TRUNK_HEADER))?,
        })
    }
}

/// Whether an INVITE asked to be a self-test call, and whether it may be one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No self-test header: an ordinary call.
    Ordinary,
    /// A self-test call we take.
    SelfTest,
    /// A self-test header we refuse (403), with why, for the log. Never treated as an
    /// ordinary call: that would ring a volunteer for a test.
    Refused(String),
}

/// Decide on an INVITE's `X-Hotline-Selftest` value (`header`), its source address
/// (None if unknown), the `[limits] trusted` networks and `[selftest] token`. With a
/// token the header must equal it, from anywhere; without one the source must be
/// loopback or trusted.
pub fn authorise(
    header: Option<&str>,
    source: Option<IpAddr>,
    trusted: &[IpNet],
    token: Option<&str>,
) -> Verdict {
    let Some(value) = header else {
        return Verdict::Ordinary;
    };
    match token {
        Some(t) if constant_time_eq(value.trim().as_bytes(), t.as_bytes()) => Verdict::SelfTest,
        Some(_) => Verdict::Refused(format!(
            "its {SELFTEST_HEADER} header does not carry the [selftest] token"
        )),
        None => match source {
            Some(ip) if ip.is_loopback() || trusted.iter().any(|n| n.contains(&ip)) => {
                Verdict::SelfTest
            }
            Some(ip) => Verdict::Refused(format!(
                "it comes from {ip}, which is neither loopback nor in [limits] trusted \
                 (or set [selftest] token)"
            )),
            None => Verdict::Refused("its source address is unknown".into()),
        },
    }
}

/// Compare without an early exit, so the time taken says nothing about the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(hunt: &[&str], trunk: TrunkState) -> Answer {
        Answer {
            station: "health".into(),
            hunt: hunt.iter().map(|s| s.to_string()).collect(),
            trunk,
        }
    }

    fn read(headers: &[(String, String)]) -> Result<Answer, String> {
        Answer::from_headers(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }

    #[test]
    fn answers_survive_their_headers() {
        for a in [
            answer(&["ann", "bo"], TrunkState::Registered),
            answer(&["ann"], TrunkState::Failed),
            answer(&[], TrunkState::None),
        ] {
            assert_eq!(read(&a.to_headers()), Ok(a));
        }
    }

    #[test]
    fn hunt_header_is_comma_separated_and_empty_for_nobody() {
        let h = answer(&["ann", "bo"], TrunkState::None).to_headers();
        assert!(h.contains(&(HUNT_HEADER.into(), "ann, bo".into())));
        assert!(h.contains(&(TRUNK_HEADER.into(), "none".into())));
        let h = answer(&[], TrunkState::None).to_headers();
        assert!(h.contains(&(HUNT_HEADER.into(), String::new())));
    }

    #[test]
    fn header_names_are_read_in_any_case_and_values_trimmed() {
        let a = Answer::from_headers([
            ("x-hotline-station", " desk "),
            ("X-HOTLINE-HUNT", "ann ,bo,, "),
            ("x-hotline-trunk", "Registered"),
            ("Via", "SIP/2.0/UDP 127.0.0.1"),
        ])
        .unwrap();
        assert_eq!(a.station, "desk");
        assert_eq!(a.hunt, ["ann", "bo"]);
        assert_eq!(a.trunk, TrunkState::Registered);
    }

    #[test]
    fn a_missing_or_bad_header_is_named() {
        let e = Answer::from_headers([("X-Hotline-Station", "desk"), ("X-Hotline-Hunt", "")])
            .unwrap_err();
        assert!(e.contains(TRUNK_HEADER), "{e}");
        let e = Answer::from_headers([
            ("X-Hotline-Station", "desk"),
            ("X-Hotline-Hunt", ""),
            ("X-Hotline-Trunk", "maybe"),
        ])
        .unwrap_err();
        assert!(e.contains("maybe"), "{e}");
        let e = Answer::from_headers([("X-Hotline-Hunt", ""), ("X-Hotline-Trunk", "none")])
            .unwrap_err();
        assert!(e.contains(STATION_HEADER), "{e}");
    }

    #[test]
    fn without_a_token_only_loopback_and_trusted_sources_may_self_test() {
        let trusted: Vec<IpNet> = vec!["192.0.2.0/24".parse().unwrap()];
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            authorise(None, ip("198.51.100.1"), &trusted, None),
            Verdict::Ordinary
        );
        for ok in ["127.0.0.1", "::1", "192.0.2.7"] {
            assert_eq!(
                authorise(Some("1"), ip(ok), &trusted, None),
                Verdict::SelfTest,
                "{ok}"
            );
        }
        assert!(matches!(
            authorise(Some("1"), ip("198.51.100.1"), &trusted, None),
            Verdict::Refused(why) if why.contains("198.51.100.1")
        ));
        assert!(matches!(
            authorise(Some("1"), None, &trusted, None),
            Verdict::Refused(_)
        ));
    }

    #[test]
    fn with_a_token_the_header_must_carry_it_from_anywhere() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let t = Some("s3cret");
        assert_eq!(
            authorise(Some("s3cret"), ip("198.51.100.1"), &[], t),
            Verdict::SelfTest
        );
        assert!(matches!(
            authorise(Some("wrong"), ip("127.0.0.1"), &[], t),
            Verdict::Refused(_)
        ));
        assert!(matches!(
            authorise(Some(""), ip("127.0.0.1"), &[], t),
            Verdict::Refused(_)
        ));
    }
}
