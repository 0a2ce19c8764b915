//! `hotline`: run the daemon, check a configuration, list recent calls, show
//! who is on duty, or count the calls for the community's report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{Offset as _, TimeZone as _};
use clap::{Parser, Subcommand};
use hotline::config::Config;
use hotline::roster::{Roster, DEFAULT_TIMEZONE};
use hotline::server::Server;
use hotline::store::Store;
use tracing::{error, info};

const DEFAULT_CONFIG: &str = "config/hotline.toml";

#[derive(Parser)]
#[command(
    name = "hotline",
    version,
    about = "IVR and call-routing daemon for small phone hotlines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer calls until SIGINT or SIGTERM.
    Run {
        /// The configuration file (if the default one is absent: the embedded defaults).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate the configuration, the prompts and the roster; exit non-zero on any error.
    ///
    /// Reads the configuration file, every prompt the menu needs (under `[menu]
    /// prompts_dir`) and the roster file `[roster] file` names (warning of hours
    /// nobody covers and of volunteers nobody can call), and opens the call records
    /// database `[database] url` read-only: a bad URL or a server that does not
    /// answer is an error. Nothing is written.
    Check {
        /// The configuration file (if the default one is absent: the embedded defaults).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show recent call records, with every volunteer tried.
    Calls {
        /// The configuration file (if the default one is absent: the embedded defaults).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show, for each station, whom a call would ring at a moment (default now).
    OnDuty {
        /// The configuration file (if the default one is absent: the embedded defaults).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// "2026-12-01 09:30" in the roster's timezone, or RFC 3339.
        #[arg(long)]
        at: Option<String>,
        /// Only this station id.
        #[arg(long)]
        station: Option<String>,
        /// Use this roster file instead of the configured one (check before saving).
        #[arg(long)]
        roster: Option<PathBuf>,
    },
    /// Show the running daemon's state: active calls, trunk, roster, call records
    /// (from its admin listener, `[admin] listen`). Exit 2 if it is not running.
    Status {
        /// The configuration file (if the default one is absent: the embedded defaults).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print the JSON of /status instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Calls handled per station and per volunteer, for the community's report.
    Report {
        /// The configuration file (if the default one is absent: the embedded defaults).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// First day, YYYY-MM-DD (local time of the roster's timezone).
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// Last day, inclusive (not before --from).
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A test phone: a volunteer's (--listen) that answers with a tone, or a caller
    /// (--dial) that presses keys and reports the prompts, ringback and tones it heard.
    Phone(hotline::phone::PhoneArgs),
    /// Call the running daemon once per station, as a resident would, and report
    /// whether the menu answered, whom the hunt would ring first (nobody is rung)
    /// and the trunk's registration. Exit 1 if any station failed: for cron or
    /// monitoring.
    Selftest {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Only this station id.
        #[arg(long, conflicts_with = "all")]
        station: Option<String>,
        /// Every station (the default).
        #[arg(long)]
        all: bool,
        /// Seconds to wait for the daemon's answer and for its report, each.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hotline: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => run(&config).await,
            Command::Check { config } => check(&config).await,
            Command::Calls {
                config,
                limit,
                json,
            } => calls(&config, limit, json).await,
            Command::OnDuty {
                config,
                at,
                station,
                roster,
            } => on_duty(
                &config,
                at.as_deref(),
                station.as_deref(),
                roster.as_deref(),
            ),
            Command::Report {
                config,
                from,
                to,
                json,
            } => report(&config, from, to, json).await,
            Command::Status { config, json } => status(&config, json).await,
            Command::Phone(args) => hotline::phone::run(args).await,
            Command::Selftest {
                config,
                station,
                all: _,
                timeout,
            } => selftest(&config, station.as_deref(), timeout).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs on standard error: text, or JSON lines when `hotline run`'s config says
/// `[log] format = "json"` (a config that does not load is reported by `run`).
fn init_logs(command: &Command) {
    // rsipstack logs every packet at info; an operator wants our words.
    // `selftest` runs from cron: only trouble on standard error, beside its verdict.
    let default = match command {
        Command::Selftest { .. } => "warn",
        _ => "info,rsipstack=warn,sqlx=warn",
    };
    let filter =
        || tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let json = match command {
        Command::Run { config } if config.exists() => {
            Config::load(config).is_ok_and(|c| c.log.format == hotline::config::LogFormat::Json)
        }
        _ => false,
    };
    let colour = use_colour(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR"),
    );
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if json {
        // Each line carries the current span and its parents: a call's call_id.
        logs.json()
            .with_current_span(true)
            .with_span_list(true)
            .init();
    } else {
        logs.init();
    }
}

/// Colours in the logs only on a terminal, and never when `NO_COLOR` is set
/// to anything but "" (no-color.org): a file or a pipe gets plain text.
fn use_colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// What a command ends with: done, or the message for the admin (printed on
/// standard error, exit status 1; empty when it is already in the log).
type Outcome = Result<(), String>;

/// Exit status of `hotline status` when the daemon is not running.
const NOT_RUNNING: u8 = 2;

/// `hotline status`: the running daemon's /status, as a table or JSON.
async fn status(path: &Path, json: bool) -> Outcome {
    use hotline::admin::status::{fetch, format_status, FetchError};
    let config = load_config(path)?;
    let Some(mut addr) = config.admin.listen else {
        return Err(format!(
            "{}: the admin listener is off ([admin] listen = \"\"); hotline status needs it",
            config.source.display()
        ));
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    match fetch(addr, config.admin.token.as_deref()).await {
        Ok((_, body)) if json => println!("{body}"),
        Ok((status, _)) => print!("{}", format_status(&status)),
        Err(e @ FetchError::NotRunning(_)) => {
            eprintln!("{e}");
            std::process::exit(i32::from(NOT_RUNNING));
        }
        Err(e) => return Err(e.to_string()),
    }
    Ok(())
}

/// Load the configuration. The default path falls back to the embedded defaults when
/// absent, so `hotline run` works on a fresh machine with no files at all.
fn load_config(path: &Path) -> Result<Config, String> {
    if path == Path::new(DEFAULT_CONFIG) && !path.exists() {
        info!("{DEFAULT_CONFIG} not found; using the embedded defaults");
        return Ok(Config::embedded_default());
    }
    Config::load(path).map_err(|e| e.to_string())
}

async fn run(path: &Path) -> Outcome {
    // A bad file is printed once by `main`; logs are not set up from it.
    let config = load_config(path)?;
    let running = Server::start(&config).await.map_err(|e| {
        // Once, in the log (JSON lines too, when configured): nothing more to print.
        error!("cannot start: {e}");
        String::new()
    })?;
    wait_for_signal(&running).await;
    info!("stop requested: refusing new calls and letting calls in progress finish");
    running
        .shutdown(Duration::from_secs(config.daemon.drain_timeout_s))
        .await;
    info!("stopped");
    Ok(())
}

/// Wait for SIGTERM or SIGINT; SIGHUP re-reads the roster and keeps running.
async fn wait_for_signal(server: &Server) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(mut term), Ok(mut int), Ok(mut hup)) => loop {
                tokio::select! {
                    _ = term.recv() => return,
                    _ = int.recv() => return,
                    _ = hup.recv() => {
                        info!("SIGHUP: re-reading the roster");
                        // Reading and checking the file blocks: tell the
                        // runtime, so calls move to the other workers meanwhile.
                        tokio::task::block_in_place(|| server.reload_roster());
                    }
                }
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = server;
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn check(path: &Path) -> Outcome {
    let config = load_config(path)?;
    let names = hotline::call::required_prompts(&config);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    hotline::media::prompts::PromptSet::load(&config.prompts_path(), &names)
        .map_err(|e| e.to_string())?;
    let roster_file = &config.roster.file;
    if roster_file.exists() {
        let roster = load_roster(roster_file, &config)?;
        for gap in roster.gaps(&config.stations) {
            println!("warning: {}: {gap}", roster_file.display());
        }
        for (v, why) in roster.unreachable(hotline::roster::Reach::of(&config)) {
            println!(
                "warning: {}: volunteer {} cannot be called: {why}",
                roster_file.display(),
                v.id
            );
        }
        println!(
            "{}: OK ({} volunteers, {} shifts)",
            roster_file.display(),
            roster.volunteers.len(),
            roster.shifts.len()
        );
    } else {
        println!(
            "warning: {}: no roster file; nobody is on duty and calls go to voicemail",
            roster_file.display()
        );
    }
    check_database(&config).await?;
    println!(
        "{}: OK ({} stations, {} prompts in {})",
        config.source.display(),
        config.stations.len(),
        names.len(),
        config.prompts_path().display()
    );
    Ok(())
}

/// `check`: open the call records database read-only (never create it).
async fn check_database(config: &Config) -> Outcome {
    use hotline::store::{probe, Probe};
    match probe(&config.database.url, Duration::from_secs(5)).await {
        Ok(Probe::Opened) => println!("call records database: OK (opened read-only)"),
        Ok(Probe::NotCreatedYet(file)) => println!(
            "call records database: {} does not exist yet; `hotline run` creates it",
            file.display()
        ),
        Err(e) => return Err(database_error(config, &e)),
    }
    Ok(())
}

/// A database problem, naming the file and field the URL came from.
fn database_error(config: &Config, e: &hotline::store::StoreError) -> String {
    format!("{}: [database] url: {e}", config.source.display())
}

/// The roster in `file`, checked against the configured stations.
fn load_roster(file: &Path, config: &Config) -> Result<Roster, String> {
    Roster::load(file, &config.stations).map_err(|e| e.to_string())
}

/// The call records store the configuration names, for a command that reads
/// it: a database that does not exist yet is an error, never created.
async fn open_store(config: &Config) -> Result<Store, String> {
    Store::open_existing(&config.database.url)
        .await
        .map_err(|e| database_error(config, &e))
}

async fn calls(path: &Path, limit: u32, json: bool) -> Outcome {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let rows = store
        .recent_calls_with_attempts(limit)
        .await
        .map_err(|e| format!("cannot read call records: {e}"))?;
    if json {
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| format!("cannot format call records: {e}"))?;
        println!("{text}");
    } else {
        print!("{}", hotline::store::format_calls_with_attempts(&rows));
    }
    Ok(())
}

fn on_duty(path: &Path, at: Option<&str>, station: Option<&str>, roster: Option<&Path>) -> Outcome {
    let config = load_config(path)?;
    let roster = load_roster(roster.unwrap_or(&config.roster.file), &config)?;
    if let Some(id) = station {
        if !config.stations.iter().any(|s| s.id == id) {
            return Err(format!("unknown station {id:?}"));
        }
    }
    let when = match at {
        Some(text) => {
            hotline::roster::parse_at(text, roster.timezone).map_err(|e| format!("--at: {e}"))?
        }
        None => chrono::Utc::now(),
    };
    print!(
        "{}",
        hotline::roster::format_on_duty(&roster, &config.stations, when, station)
    );
    Ok(())
}

async fn report(
    path: &Path,
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
    json: bool,
) -> Outcome {
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(format!(
                "--from {from} is after --to {to}: give the first day as --from and the last as --to"
            ));
        }
    }
    let config = load_config(path)?;
    // Days are counted in the roster's timezone (the community's local days).
    let tz = load_roster(&config.roster.file, &config)
        .map(|r| r.timezone)
        .unwrap_or(DEFAULT_TIMEZONE);
    // Today's offset: right for zones without daylight saving, such as Shanghai.
    let offset = tz
        .offset_from_utc_datetime(&chrono::Utc::now().naive_utc())
        .fix();
    let store = open_store(&config).await?;
    let report = store
        .report(from, to, offset)
        .await
        .map_err(|e| format!("cannot compute the report: {e}"))?;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| format!("cannot format the report: {e}"))?;
        println!("{text}");
    } else {
        let names: Vec<(String, String)> = config
            .stations
            .iter()
            .map(|s| (s.id.clone(), s.name.clone()))
            .collect();
        print!("{}", hotline::store::format_report(&report, &names));
    }
    Ok(())
}

/// `hotline selftest`: one self-test call per station; a line each; Err naming the
/// stations that failed.
async fn selftest(path: &Path, station: Option<&str>, timeout_s: u64) -> Outcome {
    use hotline::selftest::client::{check, Options};
    let config = load_config(path)?;
    let stations: Vec<_> = config
        .stations
        .iter()
        .filter(|s| station.is_none_or(|id| s.id == id))
        .cloned()
        .collect();
    if let (Some(id), true) = (station, stations.is_empty()) {
        return Err(format!("unknown station {id:?}"));
    }
    let options = Options {
        daemon: Options::daemon_addr(config.sip.listen),
        number: config.sip.numbers.first().cloned().unwrap_or_default(),
        token: config.selftest.token.clone(),
        step_timeout: Duration::from_secs(timeout_s.max(1)),
    };
    // Volunteers' names, when the roster reads; ids alone otherwise.
    let (file, known) = (config.roster.file.clone(), config.stations.clone());
    let names = tokio::task::spawn_blocking(move || Roster::load(&file, &known))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|r| r.volunteers.into_iter().map(|v| (v.id, v.name)).collect())
        .unwrap_or_default();
    let results = check(&options, &stations).await?;
    let mut failed = Vec::new();
    for r in &results {
        println!("{}", r.line(&names));
        if !r.problems().is_empty() {
            failed.push(format!("{} ({})", r.station, r.problems().join("; ")));
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(format!(
        "selftest: {} of {} stations failed: {}",
        failed.len(),
        results.len(),
        failed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some("".into())));
        assert!(!use_colour(true, Some("1".into())));
        assert!(!use_colour(false, None));
    }
}
