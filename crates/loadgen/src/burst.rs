//! `burst`: exactly N requests at once, each on its own connection, every
//! outcome classified; and `soak`: a steady closed-loop load reporting
//! every interval, with a look at a watched process (memory, descriptors,
//! TCP connections) at each report.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Barrier, mpsc, watch};

use crate::procinfo;
use crate::request::{self, Detail, Outcome, Spec};
use crate::tally::Tally;

/// Opens `count` connections, then sends one request on each at the same
/// moment and waits for all of them. Connections that cannot be opened
/// count as `transport` failures. The answer text is kept, so the answers
/// can be compared (`answers.distinct`).
pub async fn burst(spec: Arc<Spec>, count: usize) -> anyhow::Result<Value> {
    let mut tally = Tally::default();
    let mut conns = Vec::with_capacity(count);
    for _ in 0..count {
        match spec.target.connect().await {
            Ok(c) => conns.push(c),
            Err(e) => tally.add(&Err(e.context("opening the connection"))),
        }
    }
    let barrier = Arc::new(Barrier::new(conns.len() + 1));
    let mut tasks = Vec::with_capacity(conns.len());
    for mut conn in conns {
        let (spec, barrier) = (spec.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            request::send_detail(&mut conn, &spec, Detail::Text).await
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    for t in tasks {
        tally.add(&t.await?);
    }
    let wall = start.elapsed();
    let mut v = tally.to_json();
    if let Some(o) = v.as_object_mut() {
        o.insert("count".into(), json!(count));
        o.insert("wall_s".into(), json!(wall.as_secs_f64()));
    }
    Ok(v)
}

pub struct SoakOptions {
    pub concurrency: usize,
    pub duration: Duration,
    pub interval: Duration,
    /// A process looked at with each report.
    pub watch_pid: Option<String>,
}

/// `concurrency` connections send requests back to back for `duration`
/// (or until `stop` completes). Every `interval`, `emit` gets one JSON
/// object: the requests that ended in that interval (counts, handovers,
/// latency percentiles) and a snapshot of the watched process. Returns
/// the totals once the requests in flight have ended.
pub async fn soak(
    spec: Arc<Spec>,
    opts: SoakOptions,
    stop: impl Future<Output = ()>,
    mut emit: impl FnMut(Value),
) -> anyhow::Result<Value> {
    let (tx, mut rx) = mpsc::unbounded_channel::<anyhow::Result<Outcome>>();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = Vec::with_capacity(opts.concurrency);
    for _ in 0..opts.concurrency {
        let conn = spec.target.connect().await?;
        workers.push(tokio::spawn(soak_worker(
            conn,
            spec.clone(),
            tx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(tx);
    let start = Instant::now();
    let mut ticker = tokio::time::interval_at((start + opts.interval).into(), opts.interval);
    let mut total = Tally::default();
    tokio::pin!(stop);
    loop {
        let stopped = tokio::select! {
            _ = ticker.tick() => false,
            () = &mut stop => true,
        };
        let mut part = Tally::default();
        while let Ok(r) = rx.try_recv() {
            part.add(&r);
        }
        let elapsed = start.elapsed();
        emit(report(&mut part, elapsed, opts.watch_pid.as_deref()));
        total.merge(part);
        if stopped || elapsed >= opts.duration {
            break;
        }
    }
    let _ = stop_tx.send(true);
    for w in workers {
        w.await?;
    }
    while let Some(r) = rx.recv().await {
        total.add(&r);
    }
    let mut v = total.to_json();
    if let Some(o) = v.as_object_mut() {
        o.insert("duration_s".into(), json!(start.elapsed().as_secs_f64()));
        o.insert("concurrency".into(), json!(opts.concurrency));
        o.insert("total".into(), json!(true));
    }
    Ok(v)
}

fn report(part: &mut Tally, elapsed: Duration, pid: Option<&str>) -> Value {
    let mut v = part.to_json();
    if let Some(o) = v.as_object_mut() {
        o.insert("t_s".into(), json!((elapsed.as_secs_f64() * 10.0).round() / 10.0));
        if let Some(pid) = pid {
            let p = procinfo::snapshot(pid)
                .map(|s| s.to_json())
                .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
            o.insert("proc".into(), p);
        }
    }
    v
}

async fn soak_worker(
    mut conn: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    spec: Arc<Spec>,
    tx: mpsc::UnboundedSender<anyhow::Result<Outcome>>,
    stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let r = request::send_detail(&mut conn, &spec, Detail::Timings).await;
        let broken = r.is_err();
        if tx.send(r).is_err() {
            return;
        }
        if broken {
            // The connection may be broken: open a new one; when the server
            // is gone, say so once and stop this worker.
            match spec.target.connect().await {
                Ok(c) => conn = c,
                Err(e) => {
                    let _ = tx.send(Err(e.context("reconnecting")));
                    return;
                }
            }
        }
    }
}
