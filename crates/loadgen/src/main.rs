//! The `loadgen` command line: `run` (load for a bounded time, percentiles
//! as JSON), `trace` (one streamed request, every piece timed), `burst` (N
//! requests at once, each outcome classified), `soak` (steady load,
//! reported interval by interval) and `proc` (a process's memory,
//! descriptors and TCP sockets).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use loadgen::conn::Target;
use loadgen::request::{self, Spec};
use loadgen::{cpu, stats};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "HTTP/1.1 load client for Tandem's benchmarks (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load for a bounded time: N connections send requests back to back
    /// (closed loop), or requests start on a fixed schedule (`--rate`).
    Run(RunArgs),
    /// One request; prints each content piece with its arrival time.
    Trace(Common),
    /// Exactly --count requests at once, one connection each; prints the
    /// outcomes (completed, error event, HTTP error, timeout, …), handovers
    /// and latency percentiles.
    Burst(BurstArgs),
    /// Steady closed-loop load for a long time; prints one JSON line per
    /// interval (requests, errors, percentiles, the watched process's RSS,
    /// descriptors and TCP connections), then the totals.
    Soak(SoakArgs),
    /// Prints a process's RSS, peak RSS, open descriptors and TCP sockets.
    Proc(ProcArgs),
}

#[derive(Args)]
struct BurstArgs {
    #[command(flatten)]
    common: Common,
    /// Requests sent at once, each on its own connection.
    #[arg(long)]
    count: usize,
    /// Runtime worker threads of this client.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Args)]
struct SoakArgs {
    #[command(flatten)]
    common: Common,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 600.0)]
    duration_s: f64,
    /// Seconds between reports.
    #[arg(long, default_value_t = 30.0)]
    interval_s: f64,
    /// A process (PID) looked at with each report.
    #[arg(long)]
    watch_pid: Option<u32>,
    /// Runtime worker threads of this client.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Args)]
struct ProcArgs {
    #[arg(long)]
    pid: u32,
}

#[derive(Args)]
struct Common {
    /// `http://127.0.0.1:PORT/v1/chat/completions` or `https://…` (with --ca).
    #[arg(long)]
    url: String,
    /// CA certificate (PEM) trusted for https URLs.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The JSON request body.
    #[arg(long)]
    body_file: PathBuf,
    /// Extra request header `name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Per-request bound, seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout_s: f64,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Open loop: requests start at this many per second, evenly spaced,
    /// whatever the answers do (wrk2's constant-throughput model), on at
    /// most --concurrency connections. A request that finds every
    /// connection busy waits, and its times count from when it was due, so
    /// a stall is not hidden by the requests it held back.
    #[arg(long)]
    rate: Option<f64>,
    /// Measured window, seconds (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    duration_s: f64,
    /// Requests before the window opens are not counted.
    #[arg(long, default_value_t = 1.0)]
    warmup_s: f64,
    /// Hard cap on requests sent, whatever the duration.
    #[arg(long, default_value_t = 200_000)]
    max_requests: u64,
    /// Runtime worker threads of this client.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// `name=PID`: report this process's CPU time over the window
    /// (repeatable); this client's own is always reported as `loadgen`.
    #[arg(long = "cpu-pid")]
    cpu_pids: Vec<String>,
    /// A label copied into the output.
    #[arg(long, default_value = "")]
    label: String,
}

/// SIGTERM or SIGINT, registered before the load starts: the window closes
/// early and the figures so far are printed (a script stops background load
/// this way once the measurement it ran beside is over).
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Run(a) => a.threads.max(1),
        Command::Burst(a) => a.threads.max(1),
        Command::Soak(a) => a.threads.max(1),
        Command::Trace(_) | Command::Proc(_) => 1,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let out = rt.block_on(async move {
        match cli.command {
            Command::Run(a) => run(a).await,
            Command::Trace(c) => trace(c).await,
            Command::Burst(a) => burst(a).await,
            Command::Soak(a) => soak(a).await,
            Command::Proc(a) => Ok(loadgen::procinfo::snapshot(&a.pid.to_string())?.to_json()),
        }
    })?;
    println!("{out}");
    Ok(())
}

fn spec(c: &Common) -> anyhow::Result<Spec> {
    let body = std::fs::read(&c.body_file).with_context(|| format!("reading {}", c.body_file.display()))?;
    serde_json::from_slice::<Value>(&body).with_context(|| format!("{} is not JSON", c.body_file.display()))?;
    let headers = c
        .headers
        .iter()
        .map(|h| {
            let (k, v) = h.split_once(':').context("--header wants `name: value`")?;
            Ok((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect::<anyhow::Result<_>>()?;
    if !(c.timeout_s > 0.0 && c.timeout_s <= 600.0) {
        bail!("--timeout-s must be in (0, 600]");
    }
    Ok(Spec {
        target: Target::new(&c.url, c.ca.as_deref())?,
        body: Bytes::from(body),
        headers,
        timeout: Duration::from_secs_f64(c.timeout_s),
    })
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

async fn trace(c: Common) -> anyhow::Result<Value> {
    let spec = spec(&c)?;
    let mut conn = spec.target.connect().await?;
    let o = request::send(&mut conn, &spec, true).await?;
    let pieces: Vec<Value> = o.pieces.iter().map(|(t, s)| json!([ms(*t), s])).collect();
    Ok(json!({
        "status": o.status,
        "ok": o.ok(),
        "route": o.route,
        "ttfb_ms": ms(o.ttfb),
        "first_content_ms": o.first_content.map(ms),
        "last_byte_ms": ms(o.last_byte),
        "done": o.done,
        "pieces": pieces,
        "others": o.others,
    }))
}

async fn burst(a: BurstArgs) -> anyhow::Result<Value> {
    if a.count == 0 || a.count > 10_000 {
        bail!("--count must be in 1..=10000");
    }
    loadgen::burst::burst(Arc::new(spec(&a.common)?), a.count).await
}

async fn soak(a: SoakArgs) -> anyhow::Result<Value> {
    if a.concurrency == 0 || a.concurrency > 1024 {
        bail!("--concurrency must be in 1..=1024");
    }
    if !(a.duration_s > 0.0 && a.duration_s <= 86_400.0 && a.interval_s >= 0.1 && a.interval_s <= a.duration_s) {
        bail!("--duration-s must be in (0, 86400] and --interval-s in [0.1, duration]");
    }
    let watch_pid = a.watch_pid.map(|p| p.to_string());
    if let Some(p) = &watch_pid {
        loadgen::procinfo::snapshot(p)?;
    }
    let opts = loadgen::burst::SoakOptions {
        concurrency: a.concurrency,
        duration: Duration::from_secs_f64(a.duration_s),
        interval: Duration::from_secs_f64(a.interval_s),
        watch_pid,
    };
    let mut signals = StopSignals::new()?;
    let stop = async move { signals.recv().await };
    // Interval lines go out as they come; the totals are printed by main.
    let emit = |v: Value| println!("{v}");
    loadgen::burst::soak(Arc::new(spec(&a.common)?), opts, stop, emit).await
}

/// One completed request, as the window sees it.
struct Sample {
    end: Instant,
    ok: bool,
    ttfb: Duration,
    first: Option<Duration>,
    last: Duration,
}

#[derive(Default)]
struct WorkerOut {
    samples: Vec<Sample>,
    errors: BTreeMap<String, u64>,
    routes: BTreeMap<String, u64>,
}

async fn run(a: RunArgs) -> anyhow::Result<Value> {
    let spec = Arc::new(spec(&a.common)?);
    if a.concurrency == 0 || a.concurrency > 1024 {
        bail!("--concurrency must be in 1..=1024");
    }
    if a.rate.is_some_and(|r| !(r > 0.0 && r <= 1e6)) {
        bail!("--rate must be in (0, 1000000] requests per second");
    }
    if !(a.duration_s > 0.0 && a.duration_s <= 300.0 && (0.0..=60.0).contains(&a.warmup_s)) {
        bail!("--duration-s must be in (0, 300] and --warmup-s in [0, 60]");
    }
    let mut pids: Vec<(String, String)> = vec![("loadgen".into(), "self".into())];
    for p in &a.cpu_pids {
        let (name, pid) = p.split_once('=').context("--cpu-pid wants name=PID")?;
        if cpu::cpu_time(pid).is_none() {
            bail!("no readable /proc/{pid}/stat for {name}");
        }
        pids.push((name.to_owned(), pid.to_owned()));
    }

    // Connect everything before the clock starts.
    let mut conns = Vec::with_capacity(a.concurrency);
    for _ in 0..a.concurrency {
        conns.push(spec.target.connect().await?);
    }
    let start = Instant::now();
    let window_open = start + Duration::from_secs_f64(a.warmup_s);
    let planned_end = window_open + Duration::from_secs_f64(a.duration_s);
    let sent = Arc::new(AtomicU64::new(0));
    // The window's end: the planned one, or earlier on a signal.
    let (end_tx, end_rx) = tokio::sync::watch::channel(planned_end);
    let mut stop = StopSignals::new()?;

    let sampler = {
        let pids = pids.clone();
        tokio::spawn(async move {
            let sample = || pids.iter().map(|(_, p)| cpu::cpu_time(p)).collect::<Vec<_>>();
            let early = tokio::select! {
                _ = tokio::time::sleep_until(window_open.into()) => false,
                _ = stop.recv() => true,
            };
            let before = sample();
            if early {
                let _ = end_tx.send(Instant::now());
            } else {
                tokio::select! {
                    _ = tokio::time::sleep_until(planned_end.into()) => {}
                    _ = stop.recv() => {
                        let _ = end_tx.send(Instant::now());
                    }
                }
            }
            (before, sample())
        })
    };

    let mut tasks = Vec::with_capacity(a.concurrency);
    if let Some(rate) = a.rate {
        let schedule = Schedule {
            start,
            interval: Duration::from_secs_f64(1.0 / rate),
        };
        tasks.push(tokio::spawn(open_loop(
            conns,
            spec,
            schedule,
            end_rx.clone(),
            sent.clone(),
            a.max_requests,
        )));
    } else {
        for conn in conns {
            let spec = spec.clone();
            let sent = sent.clone();
            let max = a.max_requests;
            tasks.push(tokio::spawn(worker(conn, spec, end_rx.clone(), sent, max)));
        }
    }
    let mut all = WorkerOut::default();
    for t in tasks {
        all.merge(t.await?);
    }
    let (before, after) = sampler.await?;
    let deadline = *end_rx.borrow();

    // A request counts when it completed inside the window, whenever it began.
    let in_window: Vec<&Sample> = all
        .samples
        .iter()
        .filter(|s| s.end >= window_open && s.end <= deadline)
        .collect();
    let ok: Vec<&&Sample> = in_window.iter().filter(|s| s.ok).collect();
    let window = deadline
        .saturating_duration_since(window_open)
        .max(Duration::from_millis(1));
    let mut ttfb: Vec<Duration> = ok.iter().map(|s| s.ttfb).collect();
    let mut first: Vec<Duration> = ok.iter().filter_map(|s| s.first).collect();
    let mut last: Vec<Duration> = ok.iter().map(|s| s.last).collect();
    let n_ok = ok.len() as f64;
    let mut cpu = serde_json::Map::new();
    for (i, (name, _)) in pids.iter().enumerate() {
        if let (Some(b), Some(e)) = (before[i], after[i]) {
            let spent = e.saturating_sub(b);
            cpu.insert(
                name.clone(),
                json!({
                    "cpu_ms": ms(spent),
                    "cpu_ms_per_request": if n_ok > 0.0 { ms(spent) / n_ok } else { 0.0 },
                    "cores_busy": spent.as_secs_f64() / window.as_secs_f64(),
                }),
            );
        }
    }
    Ok(json!({
        "label": a.label,
        "url": a.common.url,
        "concurrency": a.concurrency,
        "rate": a.rate,
        "window_s": window.as_secs_f64(),
        "requests": ok.len(),
        "failed": in_window.len() - ok.len(),
        "errors": all.errors,
        "rps": n_ok / window.as_secs_f64(),
        "ttfb_ms": stats::summary(&mut ttfb),
        "first_content_ms": stats::summary(&mut first),
        "last_byte_ms": stats::summary(&mut last),
        "routes": all.routes,
        "cpu": cpu,
        "sent": sent.load(Ordering::Relaxed),
    }))
}

impl WorkerOut {
    /// Records one request's outcome; `lag` is how long it waited past its
    /// due time (zero in a closed loop), added to each of its times. An
    /// error tells the caller the connection may be broken.
    fn record(&mut self, result: anyhow::Result<request::Outcome>, lag: Duration) -> bool {
        match result {
            Ok(o) => {
                let ok = o.ok();
                if !ok {
                    // `run` has always named HTTP errors `status_NNN`.
                    let kind = o.kind().replace("http_", "status_");
                    *self.errors.entry(kind).or_default() += 1;
                }
                if let Some(r) = o.route {
                    *self.routes.entry(r).or_default() += 1;
                }
                self.samples.push(Sample {
                    end: Instant::now(),
                    ok,
                    ttfb: o.ttfb + lag,
                    first: o.first_content.map(|d| d + lag),
                    last: o.last_byte + lag,
                });
                true
            }
            Err(e) => {
                *self.errors.entry(format!("{e:#}")).or_default() += 1;
                false
            }
        }
    }

    fn merge(&mut self, other: WorkerOut) {
        self.samples.extend(other.samples);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in other.routes {
            *self.routes.entry(k).or_default() += v;
        }
    }
}

type Conn = hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>;

/// A broken connection is replaced; `None` when the server is gone.
async fn reconnect(spec: &Spec, out: &mut WorkerOut) -> Option<Conn> {
    match spec.target.connect().await {
        Ok(c) => Some(c),
        Err(e) => {
            *out.errors.entry(format!("reconnect: {e:#}")).or_default() += 1;
            None
        }
    }
}

async fn worker(
    mut conn: Conn,
    spec: Arc<Spec>,
    end: tokio::sync::watch::Receiver<Instant>,
    sent: Arc<AtomicU64>,
    max: u64,
) -> WorkerOut {
    let mut out = WorkerOut::default();
    while Instant::now() < *end.borrow() && sent.fetch_add(1, Ordering::Relaxed) < max {
        let result = request::send(&mut conn, &spec, false).await;
        if !out.record(result, Duration::ZERO) {
            match reconnect(&spec, &mut out).await {
                Some(c) => conn = c,
                None => break,
            }
        }
    }
    out
}

/// When the open loop's requests are due: `start + k * interval`.
struct Schedule {
    start: Instant,
    interval: Duration,
}

/// A free connection of the open loop, with the way back to the pool: the
/// loop holds no sender itself, so once every connection is lost for good
/// the pool ends instead of waiting forever.
struct Pooled {
    conn: Conn,
    back: tokio::sync::mpsc::UnboundedSender<Pooled>,
}

/// The open loop: request k is due at `start + k * interval`; it takes the
/// first free connection, waiting for one if all are busy.
async fn open_loop(
    conns: Vec<Conn>,
    spec: Arc<Spec>,
    schedule: Schedule,
    end: tokio::sync::watch::Receiver<Instant>,
    sent: Arc<AtomicU64>,
    max: u64,
) -> WorkerOut {
    let (free_tx, mut free_rx) = tokio::sync::mpsc::unbounded_channel::<Pooled>();
    for c in conns {
        let _ = free_tx.send(Pooled {
            conn: c,
            back: free_tx.clone(),
        });
    }
    drop(free_tx);
    let mut requests = tokio::task::JoinSet::new();
    let mut out = WorkerOut::default();
    for k in 0u32.. {
        let due = schedule.start + schedule.interval * k;
        if due >= *end.borrow() || sent.fetch_add(1, Ordering::Relaxed) >= max {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        // Requests that ended hand their outcome in as the loop goes.
        while let Some(done) = requests.try_join_next() {
            if let Ok(w) = done {
                out.merge(w);
            }
        }
        let Some(Pooled { mut conn, back }) = free_rx.recv().await else {
            break;
        };
        // Waiting for a connection may have outlasted the window: what
        // starts now would end after it and not count.
        if Instant::now() >= *end.borrow() {
            break;
        }
        let lag = due.elapsed();
        let spec = spec.clone();
        requests.spawn(async move {
            let mut w = WorkerOut::default();
            let result = request::send(&mut conn, &spec, false).await;
            let conn = if w.record(result, lag) {
                Some(conn)
            } else {
                reconnect(&spec, &mut w).await
            };
            if let Some(c) = conn {
                let _ = back.send(Pooled {
                    conn: c,
                    back: back.clone(),
                });
            }
            w
        });
    }
    while let Some(done) = requests.join_next().await {
        if let Ok(w) = done {
            out.merge(w);
        }
    }
    out
}
