//! `hotline phone`: the project's test phone, for admins, so a whole call (menu,
//! key, forwarding, the volunteer's voice) can be heard on one machine with no
//! other software.
//!
//! - `--listen ADDR` is a volunteer's phone ([`listen`]): answers, plays a tone,
//!   logs what it hears.
//! - `--dial URI` is a caller ([`dial`]): presses keys, then reports what it heard.
//!
//! It is built from the daemon's own parts: the SIP stack (`sip::stack`,
//! `sip::accept`, `sip::outbound`), RTP, G.711, RFC 4733 and the prompt loader
//! (`media`). What it hears is recognised by [`ear`], which has no I/O.
//! (`tests/common/phone.rs` is the tests' independent peer and stays separate.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::media::prompts::{load_wav, Prompt};

mod dial;
mod ear;
mod listen;
mod media;
mod sip;

/// `hotline phone`'s options.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["listen", "dial"])))]
pub struct PhoneArgs {
    /// Be a volunteer's phone listening on this address (UDP and TCP), e.g.
    /// 127.0.0.1:5070; the roster names it as phone = "sip:1001@127.0.0.1:5070".
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Be a caller: dial this SIP URI, e.g. sip:6289110@127.0.0.1:5060.
    #[arg(long, value_name = "URI")]
    pub dial: Option<String>,
    /// Volunteer: seconds of ringing before answering.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub answer_after: f64,
    /// Play a sine tone of this frequency (Hz) to the other side; silence without it.
    #[arg(long, value_name = "HZ")]
    pub tone: Option<f64>,
    /// Volunteer: exit after this many calls have ended (default: until Ctrl-C).
    #[arg(long, value_name = "N")]
    pub calls: Option<u32>,
    /// Caller: the keys to press (RFC 4733), e.g. 2; by default once the menu
    /// (the prompt after the greeting) has played for half a second.
    #[arg(long, default_value = "", value_name = "KEYS")]
    pub keys: String,
    /// Caller: press the first key this many seconds after the answer instead.
    #[arg(long, value_name = "SECONDS")]
    pub key_after: Option<f64>,
    /// Caller: stay on the line this many seconds after the last key (or until the
    /// other side hangs up), then hang up and report.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub hold: f64,
    /// Caller: the folder of prompt WAVs to recognise (default: the configured
    /// prompts_dir/language).
    #[arg(long, value_name = "DIR")]
    pub prompts: Option<PathBuf>,
    /// The configuration that names the prompts and the ringback tone.
    #[arg(long, default_value = "config/hotline.toml")]
    pub config: PathBuf,
}

fn seconds(what: &str, s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("--{what}: {s} is not a number of seconds"))
}

/// Run the phone until it is done (a caller) or Ctrl-C / `--calls` (a volunteer).
/// Err carries the words for the admin; a caller's failed call is an Err.
pub async fn run(args: PhoneArgs) -> Result<(), String> {
    if let Some(hz) = args.tone {
        if !(20.0..=3900.0).contains(&hz) {
            return Err(format!("--tone {hz}: a phone carries 20 to 3900 Hz"));
        }
    }
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            s.cancel();
        }
    });
    if let Some(listen) = args.listen {
        let v = listen::Volunteer {
            listen,
            answer_after: seconds("answer-after", args.answer_after)?,
            tone_hz: args.tone,
            calls: args.calls,
        };
        return listen::run(v, stop).await;
    }
    let target = args.dial.clone().unwrap_or_default();
    let config = load_config(&args.config)?;
    let dir = args
        .prompts
        .clone()
        .unwrap_or_else(|| config.prompts_path());
    let prompts = load_prompts(&dir)?;
    let ringback = config.forward.ringback.freqs.clone();
    let ringback = if ringback.len() == 1 {
        ringback
    } else {
        vec![]
    };
    tracing::info!(
        "recognising {} prompts from {}",
        prompts.len(),
        dir.display()
    );
    let ear = ear::Ear::new(ear::PromptBook::new(&prompts), ringback);
    let caller = dial::Caller {
        target,
        keys: args.keys.clone(),
        key_after: args
            .key_after
            .map(|s| seconds("key-after", s))
            .transpose()?,
        hold: seconds("hold", args.hold)?,
        tone_hz: args.tone,
    };
    dial::run(caller, ear, stop).await
}

/// The configuration at `path`; the embedded defaults when the default file is absent.
fn load_config(path: &Path) -> Result<Config, String> {
    if path == Path::new("config/hotline.toml") && !path.exists() {
        return Ok(Config::embedded_default());
    }
    Config::load(path).map_err(|e| e.to_string())
}

/// Every `*.wav` in `dir`, as the daemon loads it.
fn load_prompts(dir: &Path) -> Result<Vec<Prompt>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the prompts folder {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("no prompt WAVs in {}", dir.display()));
    }
    paths
        .iter()
        .map(|p| load_wav(p).map_err(|e| e.to_string()))
        .collect()
}
