//! The `tandem` command line: `serve`, `route`, `policy check`, `score`.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::config::{Config, ProcessEnv};

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "One OpenAI-compatible endpoint for a device model and a cloud model"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        /// Configuration file; the embedded defaults when left out.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address, overriding the configuration.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Show the routing decision for a text, without generating anything.
    Route {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the signals and the reason, not only the route.
        #[arg(long)]
        explain: bool,
        /// The user message.
        text: String,
    },
    /// Policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Score JSON lines from stdin: `{"id","prompt"}` or `{"id","messages"}`;
    /// one line out per line in.
    Score {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file against the configured tiers.
    Check {
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    reexec_with_start_env()?;
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, listen } => {
            let mut cfg = Config::load(config.as_deref(), &ProcessEnv)?;
            if let Some(addr) = listen {
                cfg.server.listen = addr;
                cfg.check_listen()?;
            }
            gateway::logging::init(&cfg.logging)?;
            // Start-up, the device monitor and the policy watcher run here;
            // connections are served on threads of their own (`server::run`).
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(gateway::daemon::serve(cfg))
        }
        Command::Route { config, explain, text } => {
            let cfg = Config::load(config.as_deref(), &ProcessEnv)?;
            let offline = gateway::offline::Offline::new(&cfg)?;
            let v = offline.route_text(&text);
            let out = if explain {
                serde_json::to_string_pretty(&v)?
            } else {
                format!(
                    "{} (rule {}, cloud {})",
                    v["route"].as_str().unwrap_or(""),
                    v["rule"].as_str().unwrap_or(""),
                    v["cloud"].as_str().unwrap_or("")
                )
            };
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{out}");
            Ok(())
        }
        Command::Policy {
            command: PolicyCommand::Check { file, config },
        } => {
            let cfg = Config::load(config.as_deref(), &ProcessEnv)?;
            match gateway::offline::check_policy(&cfg, &file) {
                Ok(summary) => {
                    let _ = writeln!(std::io::stdout(), "{}: ok ({summary})", file.display());
                    Ok(())
                }
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Score { config } => {
            let cfg = Config::load(config.as_deref(), &ProcessEnv)?;
            let offline = gateway::offline::Offline::new(&cfg)?;
            let stdin = std::io::stdin();
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let (mut lines, mut failed) = (0usize, 0usize);
            for bytes in stdin.lock().split(b'\n') {
                let bytes = bytes.context("reading stdin")?;
                let v = match String::from_utf8(bytes) {
                    Ok(line) if line.trim().is_empty() => continue,
                    Ok(line) => offline.score_line(&line),
                    Err(_) => Err(gateway::offline::score_error(serde_json::Value::Null, "not UTF-8")),
                };
                lines += 1;
                let v = v.unwrap_or_else(|e| {
                    failed += 1;
                    e
                });
                serde_json::to_writer(&mut out, &v)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            if failed > 0 {
                eprintln!("tandem score: {failed} of {lines} lines could not be scored");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// Settings libraries read as the process starts, before `main` could set
/// them; each applies only where the environment does not already say:
/// - `OMP_WAIT_POLICY=passive`: libgomp reads it when it is loaded; with its
///   default spin-waiting, local generation collapses tenfold as soon as
///   anything else wants a core.
/// - `MIMALLOC_PURGE_DELAY=0`, `MIMALLOC_ARENA_EAGER_COMMIT=0`: the allocator
///   gives freed pages back at once and commits memory as it is used, so the
///   idle daemon is as small as with the system allocator (see
///   `gateway::memory`).
const START_ENV: [(&str, &str); 3] = [
    ("OMP_WAIT_POLICY", "passive"),
    ("MIMALLOC_PURGE_DELAY", "0"),
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
];

/// Runs this program again with the [`START_ENV`] settings the environment
/// lacks.
fn reexec_with_start_env() -> anyhow::Result<()> {
    let missing: Vec<(&str, &str)> = START_ENV
        .into_iter()
        .filter(|(k, _)| std::env::var_os(k).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe().context("locating the tandem executable")?;
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .envs(missing.iter().copied())
            .exec();
        Err(err).context("re-executing with the start-up environment")
    }
    #[cfg(not(unix))]
    Ok(())
}
