//! `hotline`: run the daemon, check a configuration, or list recent calls.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hotline::config::Config;
use hotline::server::Server;
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
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate the configuration and the prompts; exit non-zero on any error.
    Check {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show recent call records.
    Calls {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // rsipstack logs every packet at info; an operator wants our words.
                .unwrap_or_else(|_| "info,rsipstack=warn,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
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
    runtime.block_on(async {
        match cli.command {
            Command::Run { config } => run(&config).await,
            Command::Check { config } => check(&config),
            Command::Calls {
                config,
                limit,
                json,
            } => calls(&config, limit, json).await,
        }
    })
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

async fn run(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(e) => {
            error!("configuration rejected:\n{e}");
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let running = match Server::start(&config).await {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    wait_for_signal().await;
    info!("stop requested: refusing new calls and letting calls in progress finish");
    running
        .server
        .shutdown(Duration::from_secs(config.daemon.drain_timeout_s))
        .await;
    info!("stopped");
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn check(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let names = hotline::call::required_prompts(&config);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    if let Err(e) = hotline::media::prompts::PromptSet::load(&config.prompts_path(), &names) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    println!(
        "{}: OK ({} stations, {} prompts in {})",
        config.source.display(),
        config.stations.len(),
        names.len(),
        config.prompts_path().display()
    );
    ExitCode::SUCCESS
}

async fn calls(path: &Path, limit: u32, json: bool) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let store = match hotline::store::Store::open(&config.database.url).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("call records database: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rows = match store.recent_calls(limit).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot read call records: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        match serde_json::to_string_pretty(&rows) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("cannot format call records: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", hotline::store::format_calls_table(&rows));
    }
    ExitCode::SUCCESS
}
