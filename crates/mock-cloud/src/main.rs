//! `mock-cloud`: the mock OpenAI-compatible server as a process, for the
//! compose harness, benchmarks and cross-process tests.
//!
//! Prints exactly one line to stdout once it accepts connections,
//! `mock-cloud listening on https://ADDR` (or `http://`), and exits cleanly
//! on SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use mock_cloud::{Fault, MockConfig, RandomFaults, TlsMode};

#[derive(Debug, Parser)]
#[command(
    name = "mock-cloud",
    version,
    about = "OpenAI-compatible mock LLM server with TLS and fault injection"
)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Serve plain HTTP instead of TLS.
    #[arg(long, conflicts_with_all = ["cert", "key", "san", "ca_out"])]
    plain: bool,
    /// PEM certificate chain to serve (with --key) instead of a generated one.
    #[arg(long, requires = "key", conflicts_with_all = ["san", "ca_out"])]
    cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Extra name or IP address for the generated certificate, added to
    /// localhost, 127.0.0.1, ::1 and mock-cloud. Repeatable.
    #[arg(long = "san")]
    san: Vec<String>,
    /// Write the generated CA certificate (PEM) to this file.
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Require `Authorization: Bearer <value of this environment variable>` on /v1/*.
    #[arg(long)]
    api_key_env: Option<String>,
    /// Requests kept in the record (GET /mock/requests).
    #[arg(long, default_value_t = 10_000)]
    record_limit: usize,
    /// Model ids listed by GET /v1/models. Repeatable.
    #[arg(long = "model", default_values_t = ["mock-large".to_string()])]
    models: Vec<String>,
    /// Answer every request with the last user message (as `x-mock-echo: 1`).
    #[arg(long)]
    echo: bool,

    // Default fault for every request (a request's x-mock-fault header overrides key by key).
    /// Milliseconds before response headers.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Milliseconds before each streamed content chunk.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Answer every request with this error status (400..=599).
    #[arg(long)]
    status: Option<u16>,
    /// retry-after seconds on injected errors.
    #[arg(long)]
    retry_after: Option<u64>,
    /// Close the connection after N content chunks.
    #[arg(long)]
    cut_after: Option<u32>,
    /// Send `data: {not json` after N content chunks.
    #[arg(long)]
    malformed_after: Option<u32>,
    /// Stop sending after N content chunks and hold the connection.
    #[arg(long)]
    stall_after: Option<u32>,
    /// Send an in-band error event after N content chunks.
    #[arg(long)]
    error_event_after: Option<u32>,
    /// Content chunks per answer (default 12).
    #[arg(long)]
    chunks: Option<u32>,

    // Random fault mix, for load tests.
    /// Share of requests cut after a random number of chunks.
    #[arg(long, default_value_t = 0.0)]
    cut_rate: f64,
    /// Share of requests answered 429, 500 or 503.
    #[arg(long, default_value_t = 0.0)]
    status_rate: f64,
    /// Share of requests that stall after a random number of chunks.
    #[arg(long, default_value_t = 0.0)]
    stall_rate: f64,
    /// Seed of the random fault mix.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl Args {
    fn config(&self) -> anyhow::Result<MockConfig> {
        let tls = if self.plain {
            TlsMode::Plain
        } else if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            TlsMode::Files {
                cert: cert.clone(),
                key: key.clone(),
            }
        } else {
            let mut sans = mock_cloud::default_sans();
            sans.extend(self.san.iter().cloned());
            TlsMode::Generate { sans }
        };
        let api_key = match &self.api_key_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Some(v),
                _ => bail!("--api-key-env {var}: the variable is unset or empty"),
            },
        };
        let default_fault = Fault {
            latency_ms: self.latency_ms,
            chunk_delay_ms: self.chunk_delay_ms,
            status: self.status,
            retry_after: self.retry_after,
            cut_after: self.cut_after,
            malformed_after: self.malformed_after,
            stall_after: self.stall_after,
            error_event_after: self.error_event_after,
            chunks: self.chunks,
            fail_first: None,
        };
        Ok(MockConfig {
            tls,
            default_fault,
            api_key,
            record_limit: self.record_limit,
            random: RandomFaults {
                cut_rate: self.cut_rate,
                status_rate: self.status_rate,
                stall_rate: self.stall_rate,
                seed: self.seed,
            },
            models: self.models.clone(),
            echo: self.echo,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let cfg = args.config()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let mock = mock_cloud::spawn(listener, cfg).await?;
    if let Some(path) = &args.ca_out {
        let pem = mock.ca_pem.as_deref().unwrap_or_default();
        std::fs::write(path, pem).with_context(|| format!("writing the CA to {}", path.display()))?;
    }
    let scheme = if mock.url.starts_with("https") { "https" } else { "http" };
    let mut out = std::io::stdout().lock();
    writeln!(out, "mock-cloud listening on {scheme}://{}", mock.addr)?;
    out.flush()?;
    drop(out);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    mock.shutdown().await;
    Ok(())
}
