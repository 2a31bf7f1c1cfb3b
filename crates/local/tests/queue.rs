//! The bounded queue in front of one slot: refusal when full, the wait
//! bound, and a dropped stream freeing its slot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use api::{Backend, BackendErrorKind, Event, FinishReason};
use common::{collect, greedy, long_question, tier, wait_idle};
use futures::StreamExt;
use local::{LocalBackend, LocalTierConfig};
use serde_json::json;

/// A request that keeps the only slot busy for many seconds.
fn long() -> api::Generate {
    greedy(900, json!({}))
}

/// Reads a stream up to the first event `stop` accepts; an error or the
/// stream's end before it fails the test.
async fn read_until(s: &mut api::EventStream, what: &str, stop: impl Fn(&Event) -> bool) {
    loop {
        match s.next().await {
            Some(Ok(ev)) if stop(&ev) => return,
            Some(Ok(_)) => {}
            other => panic!("expected {what}, got {other:?}"),
        }
    }
}

/// Waits for the first text of a stream, so the job is surely running.
async fn first_text(s: &mut api::EventStream) {
    read_until(
        s,
        "text",
        |ev| matches!(ev, Event::Text { text, .. } if !text.is_empty()),
    )
    .await;
}

#[tokio::test]
async fn full_queue_is_refused_at_once_and_wait_bound_yields_overloaded() {
    let cfg = LocalTierConfig {
        queue_len: 1,
        queue_wait_ms: 300,
        ..tier("q")
    };
    let b = LocalBackend::new(&cfg).unwrap();
    let mut busy = b.stream(long()).await.unwrap();
    first_text(&mut busy).await;

    // One may wait...
    let waiting = b.stream(greedy(2, json!({}))).await.unwrap();
    assert_eq!(b.status().queued, 1);
    // ...the next is refused without waiting.
    let refused = b.stream(greedy(2, json!({}))).await.err().expect("queue full");
    assert_eq!(refused.kind, BackendErrorKind::Overloaded);
    assert!(refused.failover_allowed());
    assert_eq!(api::ApiError::from(refused).status, 503);

    // The waiting one gives up after queue_wait_ms, before any content.
    let a = collect(waiting).await;
    let e = a.error.expect("overloaded");
    assert_eq!(e.kind, BackendErrorKind::Overloaded, "{e}");
    assert!(e.message.contains("queue_wait_ms"));
    assert_eq!(b.status().queued, 0);
    assert_eq!(b.status().busy, 1);
    drop(busy);
}

#[tokio::test]
async fn dropping_the_stream_frees_the_slot() {
    let cfg = LocalTierConfig {
        queue_len: 1,
        // Far shorter than the abandoned request would take (900 tokens),
        // far longer than the next one needs once the slot is free.
        queue_wait_ms: 8_000,
        ..tier("cancel")
    };
    let b = LocalBackend::new(&cfg).unwrap();
    let mut s = b.stream(long()).await.unwrap();
    first_text(&mut s).await;
    assert_eq!(b.status().busy, 1);
    drop(s);
    let a = collect(b.stream(greedy(3, json!({}))).await.unwrap()).await;
    assert!(a.error.is_none(), "{:?}", a.error);
    assert_eq!(a.finish, Some(FinishReason::Length));
    // A queued request dropped before it ran leaves the queue at once.
    let mut busy = b.stream(long()).await.unwrap();
    first_text(&mut busy).await;
    let queued = b.stream(greedy(2, json!({}))).await.unwrap();
    assert_eq!(b.status().queued, 1);
    drop(queued);
    assert_eq!(b.status().queued, 0);
}

#[tokio::test]
async fn dropping_the_backend_ends_running_and_waiting_requests() {
    let b = LocalBackend::new(&LocalTierConfig {
        queue_wait_ms: 600_000,
        ..tier("shutdown")
    })
    .unwrap();
    let mut running = b.stream(long()).await.unwrap();
    first_text(&mut running).await;
    let waiting = b.stream(greedy(2, json!({}))).await.unwrap();
    drop(b);
    let e = collect(waiting).await.error.expect("unavailable");
    assert_eq!(e.kind, BackendErrorKind::Unavailable);
    // The running answer stops at the next token with an error, not a
    // silent end the app could take for a complete answer.
    let mut last = None;
    while let Some(item) = running.next().await {
        last = Some(item);
    }
    let e = last.expect("an item").expect_err("an error");
    assert_eq!(e.kind, BackendErrorKind::Unavailable);
}

/// `queue_len = 0` refuses a request only when it would wait behind real
/// work: the request that loads an on-demand model is admitted, and so is
/// one for a slot that is only warming a prefill (it gives way).
#[tokio::test]
async fn no_queue_still_admits_the_loading_request_and_preempts_a_prefill() {
    let cfg = LocalTierConfig {
        queue_len: 0,
        load: local::LoadMode::OnDemand,
        ..tier("q0")
    };
    let b = LocalBackend::new(&cfg).unwrap();
    let a = collect(b.stream(greedy(2, json!({}))).await.expect("admitted while loading")).await;
    assert!(a.error.is_none(), "{:?}", a.error);

    wait_idle(&b, "the slot never became idle").await;
    let conv = long_question(40);
    let warm = b.prepare(greedy(2, conv.clone()));
    assert!(warm.is_some(), "the idle slot took the prefill");
    let handover = b.stream(greedy(2, conv)).await.expect("a prefill gives way");
    let a = collect(handover).await;
    assert!(a.error.is_none(), "{:?}", a.error);
    // With the slot doing real work, the next one is refused.
    let mut busy = b.stream(long()).await.unwrap();
    first_text(&mut busy).await;
    let refused = b.stream(greedy(2, json!({}))).await.err().expect("no queue");
    assert_eq!(refused.kind, BackendErrorKind::Overloaded);
    drop(warm);
}

/// `queue_len = 0`: the next request sent the instant an answer's `Finish`
/// arrives (its worker still doing bookkeeping), or the instant a reader
/// drops its stream, is admitted, not refused as overloaded.
#[tokio::test]
async fn no_queue_admits_the_request_sent_as_the_last_answer_ends() {
    let cfg = LocalTierConfig {
        queue_len: 0,
        ..tier("q0-next")
    };
    let b = LocalBackend::new(&cfg).unwrap();
    // The previous answer's stream stays open until the next request is
    // in: its worker may not have closed its end yet.
    let mut prev = None;
    for round in 0..24 {
        let mut s = b
            .stream(greedy(1, json!({})))
            .await
            .unwrap_or_else(|e| panic!("round {round}: refused: {e}"));
        drop(prev.take());
        if round % 4 == 3 {
            // The app goes away mid-answer and asks again at once.
            drop(s);
            continue;
        }
        read_until(&mut s, &format!("a finish in round {round}"), |ev| {
            matches!(ev, Event::Finish(_))
        })
        .await;
        prev = Some(s);
    }
    let last = collect(b.stream(greedy(1, json!({}))).await.expect("admitted")).await;
    assert!(last.error.is_none(), "{:?}", last.error);
}
