//! The gateway over fake backends, in process (`app.oneshot`): the request
//! pipeline, errors, failover and the security checks, without models.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::{
    Backend, BackendError, BackendErrorKind, BoxFuture, Event, EventStream, FinishReason, Generate, Prepared, Usage,
};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use gateway::routing::Routing;
use gateway::security::Security;
use gateway::state::{AppState, Probe, Tier, TierHealth, Tiers};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A scripted step of a fake backend.
#[derive(Clone)]
enum Step {
    Text(&'static str),
    Fail(BackendErrorKind),
    Finish,
    Usage(u32, u32),
    /// A tool-call delta: index, id (on the call's first delta), arguments.
    Tool(u32, Option<&'static str>, &'static str),
    Logprobs,
    /// Text the model was unsure of (a cascade's test fails on it).
    Unsure(&'static str),
}

struct Fake {
    name: &'static str,
    local: bool,
    /// Refuse at `stream()` time.
    refuse: Option<BackendErrorKind>,
    steps: Vec<Step>,
    calls: AtomicUsize,
    /// What each call was asked to continue from.
    seen: Mutex<Vec<Option<String>>>,
    /// Each call's `max_tokens`.
    budgets: Mutex<Vec<Option<u32>>>,
    /// A whole OpenAI answer: when set, the fake offers `complete_raw`, as
    /// a cloud backend does (refusing it when `refuse` is set).
    raw: Mutex<Option<Value>>,
    /// What `prepare` was given to continue from, per call.
    prepared: Mutex<Vec<Option<String>>>,
    /// Per `prepare` call: whether the caller has asked that work to stop.
    prepare_stops: Mutex<Vec<Arc<AtomicBool>>>,
}

impl Fake {
    fn new(name: &'static str, local: bool, steps: Vec<Step>) -> Arc<Self> {
        Arc::new(Fake {
            name,
            local,
            refuse: None,
            steps,
            calls: AtomicUsize::new(0),
            seen: Mutex::new(vec![]),
            budgets: Mutex::new(vec![]),
            raw: Mutex::new(None),
            prepared: Mutex::new(vec![]),
            prepare_stops: Mutex::new(vec![]),
        })
    }
    fn refusing(name: &'static str, local: bool, kind: BackendErrorKind) -> Arc<Self> {
        Arc::new(Fake {
            name,
            local,
            refuse: Some(kind),
            steps: vec![],
            calls: AtomicUsize::new(0),
            seen: Mutex::new(vec![]),
            budgets: Mutex::new(vec![]),
            raw: Mutex::new(None),
            prepared: Mutex::new(vec![]),
            prepare_stops: Mutex::new(vec![]),
        })
    }
}

impl Backend for Fake {
    fn name(&self) -> &str {
        self.name
    }
    fn is_local(&self) -> bool {
        self.local
    }
    fn stream(&self, req: Generate) -> BoxFuture<'_, Result<EventStream, BackendError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(req.continue_from.clone());
        self.budgets.lock().unwrap().push(req.request.max_tokens());
        let name = self.name;
        let refuse = self.refuse;
        let steps = self.steps.clone();
        Box::pin(async move {
            if let Some(kind) = refuse {
                return Err(BackendError::upstream(name, kind, "refused"));
            }
            let s = futures::stream::iter(steps.into_iter().map(move |s| match s {
                Step::Text(t) => Ok(Event::text(t)),
                Step::Fail(k) => Err(BackendError::upstream(name, k, "scripted failure")),
                Step::Finish => Ok(Event::Finish(FinishReason::Stop)),
                Step::Usage(p, c) => Ok(Event::Usage(Usage::new(p, c))),
                Step::Tool(index, id, args) => Ok(Event::ToolCall {
                    index,
                    id: id.map(str::to_owned),
                    name: id.map(|_| "get_weather".to_owned()),
                    arguments: args.to_owned(),
                }),
                Step::Logprobs => Ok(Event::Logprobs(json!({"content": []}))),
                Step::Unsure(t) => Ok(Event::Text {
                    text: t.to_owned(),
                    stats: Some(api::TokenStats {
                        logprob: -6.0,
                        entropy: 3.0,
                    }),
                }),
            }));
            Ok(Box::pin(s) as EventStream)
        })
    }
    fn complete_raw(&self, _req: Generate) -> Option<BoxFuture<'_, Result<Value, BackendError>>> {
        let raw = self.raw.lock().unwrap().clone()?;
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (name, refuse) = (self.name, self.refuse);
        Some(Box::pin(async move {
            match refuse {
                Some(kind) => Err(BackendError::upstream(name, kind, "refused")),
                None => Ok(raw),
            }
        }))
    }
    fn prepare(&self, req: Generate) -> Option<Prepared> {
        self.prepared.lock().unwrap().push(req.continue_from);
        let (prepared, stop) = Prepared::new();
        self.prepare_stops.lock().unwrap().push(stop);
        Some(prepared)
    }
}

/// A ready tier on a device whose local speed was measured.
struct Up;
impl Probe for Up {
    fn health(&self) -> TierHealth {
        TierHealth {
            ready: true,
            tps: Some(40.0),
            ..Default::default()
        }
    }
    fn status(&self) -> Value {
        json!({})
    }
}

fn state(tiers: Vec<Arc<Fake>>, default: &str) -> Arc<AppState> {
    let local = tiers.iter().find(|f| f.local).map(|f| f.name).unwrap_or_default();
    let policy = format!(
        "version = 1\ndefault_local = \"{local}\"\n[[rule]]\nname = \"default\"\nwhen = \"true\"\ntarget = \"{default}\"\n"
    );
    state_with_policy(tiers, &policy)
}

fn state_with_policy(tiers: Vec<Arc<Fake>>, policy: &str) -> Arc<AppState> {
    let tiers = Tiers {
        tiers: tiers
            .into_iter()
            .map(|f| Tier {
                name: f.name.to_owned(),
                backend: f as Arc<dyn Backend>,
                probe: Arc::new(Up),
            })
            .collect(),
    };
    let targets = Routing::targets_for(&tiers);
    let routing = Routing::new(policy, std::path::Path::new("test-policy.toml"), false, targets).unwrap();
    Arc::new(AppState {
        security: Security {
            allowed_hosts: vec!["tandem.internal".into()],
            client_token: None,
            max_body_bytes: 4096,
            body_timeout: Duration::from_secs(5),
            cors_origins: vec![],
        },
        tiers,
        routing: Arc::new(routing),
        started: std::time::Instant::now(),
    })
}

fn post(body: &str) -> Request<Body> {
    Request::post("/v1/chat/completions")
        .header("host", "127.0.0.1:8080")
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

async fn send(state: &Arc<AppState>, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = gateway::http::router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

fn sse_json(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn sse_text(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// The answer text of a run, read to its end.
async fn drain_text(run: &mut gateway::engine::Run) -> String {
    let mut text = String::new();
    while let Some(ev) = run.next_event().await {
        if let Event::Text { text: t, .. } = ev.unwrap() {
            text.push_str(&t);
        }
    }
    text
}

const CHAT: &str = r#"{"model":"auto","messages":[{"role":"user","content":"hi"}]}"#;
const CHAT_STREAM: &str = r#"{"model":"auto","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn non_stream_answer_has_route_and_tandem_object() {
    let local = Fake::new(
        "local-a",
        true,
        vec![Step::Text("Hel"), Step::Text("lo"), Step::Usage(3, 2), Step::Finish],
    );
    let st = state(vec![local], "local-a");
    let (status, headers, body) = send(&st, post(CHAT)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-tandem-route"], "local-a");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["total_tokens"], 5);
    assert_eq!(v["tandem"]["route"], "local-a");
}

#[tokio::test]
async fn stream_has_one_id_usage_and_done() {
    let local = Fake::new(
        "local-a",
        true,
        vec![Step::Text("a"), Step::Text("b"), Step::Finish, Step::Usage(1, 2)],
    );
    let st = state(vec![local], "local-a");
    let (status, headers, body) = send(&st, post(CHAT_STREAM)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    let events = sse_json(&body);
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(sse_text(&events), "ab");
    let last = events.last().unwrap();
    assert_eq!(last["usage"]["completion_tokens"], 2);
    assert_eq!(last["tandem"]["route"], "local-a");

    // Without `stream_options.include_usage`, no chunk carries usage.
    let plain = CHAT_STREAM.replace(r#""stream_options":{"include_usage":true},"#, "");
    let (_, _, body) = send(&st, post(&plain)).await;
    let events = sse_json(&body);
    assert_eq!(sse_text(&events), "ab");
    assert!(events.iter().all(|e| e.get("usage").is_none()), "{body}");
    // Every chunk has a choice (an SDK loop may read `choices[0]`): the
    // finish chunk carries the `tandem` object.
    assert!(events.iter().all(|e| e["choices"][0].is_object()), "{body}");
    let last = events.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop", "{body}");
    assert_eq!(last["tandem"]["route"], "local-a");

    // A backend that reports no usage (a server ignoring `stream_options`):
    // the usage chunk still comes, with `usage: null`, not zeros.
    let silent = Fake::new("local-a", true, vec![Step::Text("a"), Step::Finish]);
    let st = state(vec![silent], "local-a");
    let (_, _, body) = send(&st, post(CHAT_STREAM)).await;
    let events = sse_json(&body);
    let last = events.last().unwrap();
    assert_eq!(last["choices"], json!([]), "{body}");
    assert!(last.get("usage").is_some_and(Value::is_null), "{body}");
    assert_eq!(last["tandem"]["route"], "local-a");
}

#[tokio::test]
async fn failure_before_content_is_invisible() {
    // The cloud fails after an empty chunk; the next backend answers.
    let cloud = Fake::new(
        "cloud-a",
        false,
        vec![Step::Text(""), Step::Fail(BackendErrorKind::Interrupted)],
    );
    let local = Fake::new("local-a", true, vec![Step::Text("fine"), Step::Finish]);
    let st = state(vec![cloud.clone(), local.clone()], "cloud-a");
    let plan_req = post(CHAT_STREAM);
    // `auto` goes to the default tier only; with fallbacks the policy decides,
    // so exercise the engine directly through a two-backend plan.
    let _ = plan_req;
    let mut run = started(&[&cloud, &local], true, false).await;
    let text = drain_text(&mut run).await;
    assert_eq!(text, "fine");
    assert_eq!(run.info.route, "local-a");
    assert_eq!(run.info.handovers.len(), 1);
    assert!(!run.info.handovers[0].after_content);
    assert_eq!(local.seen.lock().unwrap()[0], None, "nothing was sent: start afresh");
    drop(st);
}

#[tokio::test]
async fn failure_after_content_continues_from_the_text_sent() {
    let cloud = Fake::new(
        "cloud-a",
        false,
        vec![
            Step::Text("The answer "),
            Step::Text("is "),
            Step::Fail(BackendErrorKind::Stall),
        ],
    );
    let local = Fake::new("local-a", true, vec![Step::Text("42."), Step::Finish]);
    let mut run = started(&[&cloud, &local], true, false).await;
    let text = drain_text(&mut run).await;
    assert_eq!(text, "The answer is 42.");
    assert_eq!(local.seen.lock().unwrap()[0].as_deref(), Some("The answer is "));
    assert_eq!(run.info.handovers.len(), 1);
    assert!(run.info.handovers[0].after_content);
    assert_eq!(run.info.handovers[0].reason, "stall");
}

#[tokio::test]
async fn local_only_plan_never_calls_the_cloud() {
    let local = Fake::refusing("local-a", true, BackendErrorKind::Unavailable);
    let cloud = Fake::new("cloud-a", false, vec![Step::Text("leak"), Step::Finish]);
    let plan = plan(&[&local, &cloud], false, false);
    let req = api::ChatRequest::from_slice(CHAT.as_bytes()).unwrap();
    let mut run = gateway::engine::Run::new(req, plan);
    let err = run.start().await.unwrap_err();
    assert_eq!(err.status, 503);
    assert_eq!(cloud.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn mid_stream_failure_with_no_successor_ends_with_an_error_event() {
    let local = Fake::new(
        "local-a",
        true,
        vec![Step::Text("partial"), Step::Fail(BackendErrorKind::Interrupted)],
    );
    let st = state(vec![local], "local-a");
    let (status, _, body) = send(&st, post(CHAT_STREAM)).await;
    assert_eq!(status, 200);
    let events = sse_json(&body);
    assert!(events.last().unwrap()["error"]["message"].is_string(), "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn client_errors_are_openai_shaped() {
    let st = state(vec![Fake::new("local-a", true, vec![Step::Finish])], "local-a");
    let cases: Vec<(Request<Body>, u16, Option<&str>)> = vec![
        (post("{not json"), 400, None),
        (post(r#"{"model":"auto","messages":[]}"#), 400, Some("messages")),
        (
            post(r#"{"model":"auto","messages":[{"role":"user","content":"x"}],"max_tokens":"many"}"#),
            400,
            Some("max_tokens"),
        ),
        (
            post(r#"{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}"#),
            404,
            Some("model"),
        ),
        (
            post(&format!(
                r#"{{"model":"auto","messages":[{{"role":"user","content":"{}"}}]}}"#,
                "x".repeat(5000)
            )),
            413,
            None,
        ),
        (
            Request::post("/v1/chat/completions")
                .header("host", "localhost")
                .header("content-type", "text/plain")
                .body(Body::from(CHAT))
                .unwrap(),
            415,
            None,
        ),
        (
            Request::get("/v1/nothing")
                .header("host", "localhost")
                .body(Body::empty())
                .unwrap(),
            404,
            None,
        ),
        (
            Request::get("/v1/chat/completions")
                .header("host", "localhost")
                .body(Body::empty())
                .unwrap(),
            405,
            None,
        ),
    ];
    for (req, want, param) in cases {
        let uri = req.uri().clone();
        let (status, headers, body) = send(&st, req).await;
        assert_eq!(status.as_u16(), want, "{uri}: {body}");
        assert_eq!(headers["content-type"], "application/json", "{uri}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"]["message"].is_string(), "{uri}: {body}");
        assert!(v["error"]["type"].is_string(), "{uri}: {body}");
        assert_eq!(v["error"]["param"].as_str(), param, "{uri}: {body}");
    }
}

#[tokio::test]
async fn host_check_blocks_dns_rebinding() {
    let st = state(vec![Fake::new("local-a", true, vec![Step::Finish])], "local-a");
    for (host, want) in [
        ("evil.example:8080", 403),
        ("localhost:1", 200),
        ("tandem.internal", 200),
        ("[::1]:9", 200),
    ] {
        let req = Request::get("/v1/models")
            .header("host", host)
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = send(&st, req).await;
        assert_eq!(status.as_u16(), want, "{host}: {body}");
    }
}

#[tokio::test]
async fn cors_answers_only_configured_origins_and_only_when_configured() {
    let preflight = |origin: &str| {
        Request::options("/v1/chat/completions")
            .header("host", "localhost")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .body(Body::empty())
            .unwrap()
    };
    let allowed = |h: &axum::http::HeaderMap| h.get("access-control-allow-origin").cloned();
    let off = state(vec![Fake::new("local-a", true, vec![])], "local-a");
    let (_, h, _) = send(&off, preflight("http://localhost:3000")).await;
    assert_eq!(allowed(&h), None, "CORS is off by default");

    let mut on = state(vec![Fake::new("local-a", true, vec![])], "local-a");
    Arc::get_mut(&mut on).unwrap().security.cors_origins = vec!["http://localhost:3000".into()];
    let (status, h, _) = send(&on, preflight("http://localhost:3000")).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(allowed(&h).unwrap(), "http://localhost:3000");
    // The headers openai-node sends from a browser, and the app hints.
    let mut req = preflight("http://localhost:3000");
    let asked = "authorization,content-type,x-stainless-os,x-stainless-retry-count,x-tandem-app";
    req.headers_mut()
        .insert("access-control-request-headers", asked.parse().unwrap());
    let (status, h, _) = send(&on, req).await;
    assert!(status.is_success(), "{status}");
    let granted = h["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    for name in asked.split(',') {
        assert!(granted.contains(name), "{name} not allowed: {granted}");
    }
    let (_, h, _) = send(&on, preflight("http://evil.example")).await;
    assert_eq!(allowed(&h), None, "an origin not listed");
}

/// The ids `/v1/models` lists for a local and a cloud tier of these names.
async fn model_ids(local: &'static str, cloud: &'static str) -> Vec<String> {
    let st = state(
        vec![Fake::new(local, true, vec![]), Fake::new(cloud, false, vec![])],
        local,
    );
    let req = Request::get("/v1/models")
        .header("host", "localhost")
        .body(Body::empty())
        .unwrap();
    let (_, _, body) = send(&st, req).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn models_lists_tiers_and_auto() {
    let ids = model_ids("local-a", "cloud-a").await;
    for want in ["auto", "local", "cloud", "local-a", "cloud-a"] {
        assert!(ids.iter().any(|i| i == want), "{ids:?}");
    }
    // Tiers named like the aliases (as the shipped defaults are) appear once.
    assert_eq!(model_ids("local", "cloud").await, ["auto", "local", "cloud"]);
}

fn metric_value(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_move_with_requests() {
    let cloud = Fake::new(
        "cloud-b",
        false,
        vec![Step::Text(""), Step::Fail(BackendErrorKind::Interrupted)],
    );
    let local = Fake::new("local-b", true, vec![Step::Text("ok"), Step::Usage(2, 1), Step::Finish]);
    let st = state(vec![local, cloud], "local-b");
    let scrape = |st: Arc<AppState>| async move {
        let req = Request::get("/metrics")
            .header("host", "localhost")
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = send(&st, req).await;
        assert_eq!(status, 200);
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain"));
        body
    };
    let before = scrape(st.clone()).await;
    for _ in 0..3 {
        let (status, _, _) = send(&st, post(CHAT)).await;
        assert_eq!(status, 200);
    }
    let (status, _, _) = send(
        &st,
        post(r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#),
    )
    .await;
    assert_eq!(status, 404);
    let after = scrape(st.clone()).await;
    let ok = r#"route="local-b""#;
    assert_eq!(
        metric_value(&after, "tandem_requests_total", ok) - metric_value(&before, "tandem_requests_total", ok),
        3.0,
        "{after}"
    );
    assert!(
        metric_value(&after, "tandem_requests_total", r#"status="404""#) >= 1.0,
        "{after}"
    );
    assert!(
        metric_value(&after, "tandem_tokens_total", r#"kind="completion""#)
            > metric_value(&before, "tandem_tokens_total", r#"kind="completion""#)
    );
    for name in [
        "tandem_request_duration_seconds",
        "tandem_local_tokens_per_second",
        "tandem_local_queue_depth",
        "tandem_cloud_up",
        "tandem_policy_reloads",
    ] {
        assert!(after.contains(name), "{name} missing:\n{after}");
    }
}

/// One local tier, `local-c`, for the policy reload tests.
fn one_local_tier() -> Tiers {
    let local = Fake::new("local-c", true, vec![Step::Text("ok"), Step::Finish]);
    Tiers {
        tiers: vec![Tier {
            name: "local-c".into(),
            backend: local as Arc<dyn Backend>,
            probe: Arc::new(Up),
        }],
    }
}

/// A policy whose one rule, named `rule`, sends everything to `local-c`.
fn one_rule_policy(rule: &str) -> String {
    format!(
        "version = 1\ndefault_local = \"local-c\"\n[[rule]]\nname = \"{rule}\"\nwhen = \"true\"\ntarget = \"local-c\"\n"
    )
}

/// The rule `r` picks for the test chat.
fn rule_for_chat(r: &Routing, tiers: &Tiers) -> String {
    let req = api::ChatRequest::from_slice(CHAT.as_bytes()).unwrap();
    r.explain(&req, &axum::http::HeaderMap::new(), Some(tiers))["rule"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn policy_hot_reload_swaps_good_files_and_keeps_the_old_one_on_errors() {
    let tiers = one_local_tier();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, one_rule_policy("first")).unwrap();
    let routing = Arc::new(Routing::new(&one_rule_policy("first"), &path, true, Routing::targets_for(&tiers)).unwrap());
    tokio::spawn(gateway::routing::watch_policy(
        routing.clone(),
        Duration::from_millis(20),
    ));
    let rule = |r: &Routing| rule_for_chat(r, &tiers);
    assert_eq!(rule(&routing), "first");

    // A good edit takes effect without a restart.
    tokio::time::sleep(Duration::from_millis(30)).await;
    std::fs::write(&path, one_rule_policy("second-edit")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rule(&routing) != "second-edit" {
        assert!(std::time::Instant::now() < deadline, "the edit was not picked up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A broken edit is refused with file:line, and the policy in force stays.
    std::fs::write(&path, "version = 1\ndefault_local = \"local-c\"\n[[rule]]\nname = \"broken\"\nwhen = \"privacy >= \"\ntarget = \"local-c\"\n").unwrap();
    while routing.reloads_failed.load(Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "the broken edit was not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rule(&routing), "second-edit");
    let err = routing.last_reload_error().unwrap();
    assert!(err.contains("policy.toml:5:"), "{err}");

    // An edit of the same length that keeps the modification time (within
    // the file system's granularity, or `cp -p`) is picked up too.
    std::fs::write(&path, one_rule_policy("third-edit1")).unwrap();
    while rule(&routing) != "third-edit1" {
        assert!(std::time::Instant::now() < deadline, "the third edit was not picked up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, one_rule_policy("third-edit2")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    while rule(&routing) != "third-edit2" {
        assert!(std::time::Instant::now() < deadline, "a same-length edit was missed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn policy_watcher_loads_a_file_created_later_and_an_edit_made_before_it_started() {
    let tiers = one_local_tier();
    let rule = |r: &Routing| rule_for_chat(r, &tiers);
    let wait_for = |routing: Arc<Routing>, want: &'static str| {
        let rule = &rule;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while rule(&routing) != want {
                assert!(std::time::Instant::now() < deadline, "{want} was not loaded");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let dir = tempfile::tempdir().unwrap();

    // No file at start: the stand-in policy is in force until one appears.
    let path = dir.path().join("later.toml");
    let routing = Routing::new(
        &one_rule_policy("stand-in"),
        std::path::Path::new("<embedded>"),
        false,
        Routing::targets_for(&tiers),
    )
    .unwrap()
    .watching(path.clone());
    let routing = Arc::new(routing);
    tokio::spawn(gateway::routing::watch_policy(
        routing.clone(),
        Duration::from_millis(20),
    ));
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(rule(&routing), "stand-in");
    assert_eq!(routing.status()["file"], Value::Null);
    std::fs::write(&path, one_rule_policy("created")).unwrap();
    wait_for(routing.clone(), "created").await;
    assert_eq!(routing.status()["file"], path.display().to_string());

    // The file changed between the daemon's read and the watcher's start.
    let path = dir.path().join("early.toml");
    std::fs::write(&path, one_rule_policy("read-at-start")).unwrap();
    let routing = Arc::new(
        Routing::new(
            &one_rule_policy("read-at-start"),
            &path,
            true,
            Routing::targets_for(&tiers),
        )
        .unwrap(),
    );
    std::fs::write(&path, one_rule_policy("edited-early")).unwrap();
    tokio::spawn(gateway::routing::watch_policy(
        routing.clone(),
        Duration::from_millis(20),
    ));
    wait_for(routing.clone(), "edited-early").await;
    assert_eq!(routing.reloads_ok.load(Ordering::Relaxed), 1);
}

/// A run of the test chat over `backends` in order, started.
async fn started(backends: &[&Arc<Fake>], cloud_allowed: bool, warm_standby: bool) -> gateway::engine::Run {
    let req = api::ChatRequest::from_slice(CHAT.as_bytes()).unwrap();
    let mut run = gateway::engine::Run::new(req, plan(backends, cloud_allowed, warm_standby));
    run.start().await.unwrap();
    run
}

/// A plan over `backends` in order, as routing would make it.
fn plan(backends: &[&Arc<Fake>], cloud_allowed: bool, warm_standby: bool) -> gateway::engine::Plan {
    gateway::engine::Plan {
        attempts: backends.iter().map(|b| (*b).clone() as Arc<dyn Backend>).collect(),
        info: api::TandemInfo {
            cloud_allowed,
            ..Default::default()
        },
        cascade: None,
        redact: None,
        warm_standby,
    }
}

#[tokio::test]
async fn a_successor_gets_the_budget_left_and_usage_counts_the_cut_part() {
    let cloud = Fake::new(
        "cloud-a",
        false,
        vec![
            Step::Text("one "),
            Step::Text("two "),
            // Running totals, as vLLM's `continuous_usage_stats` sends them
            // with every chunk: the last counts, not their sum.
            Step::Usage(20, 2),
            Step::Text("three "),
            Step::Usage(20, 3),
            Step::Fail(BackendErrorKind::Interrupted),
        ],
    );
    let local = Fake::new(
        "local-a",
        true,
        vec![Step::Text("four."), Step::Usage(30, 1), Step::Finish],
    );
    let req: api::ChatRequest = serde_json::from_value(json!({
        "model": "auto", "max_tokens": 10, "messages": [{"role": "user", "content": "count"}]
    }))
    .unwrap();
    let mut run = gateway::engine::Run::new(req, plan(&[&cloud, &local], true, false));
    run.start().await.unwrap();
    assert_eq!(drain_text(&mut run).await, "one two three four.");
    assert_eq!(*cloud.budgets.lock().unwrap(), [Some(10)]);
    assert_eq!(
        *local.budgets.lock().unwrap(),
        [Some(7)],
        "10 asked, 3 sent before the cut"
    );
    let usage = run.usage().unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (50, 4), "{usage:?}");
    assert_eq!(usage.total_tokens, 54);

    // A cut backend that never reported usage counts by its pieces.
    let cloud = Fake::new(
        "cloud-a",
        false,
        vec![Step::Text("one "), Step::Fail(BackendErrorKind::Interrupted)],
    );
    let local = Fake::new(
        "local-a",
        true,
        vec![Step::Text("two."), Step::Usage(30, 1), Step::Finish],
    );
    let mut run = gateway::engine::Run::new(
        serde_json::from_value(json!({"model": "auto", "messages": [{"role": "user", "content": "count"}]})).unwrap(),
        plan(&[&cloud, &local], true, false),
    );
    run.start().await.unwrap();
    assert_eq!(drain_text(&mut run).await, "one two.");
    let usage = run.usage().unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (30, 2), "{usage:?}");
}

#[tokio::test]
async fn warm_standby_prepares_the_local_fallback_once_when_the_cloud_starts() {
    let steps = vec![Step::Text("fine"), Step::Finish];
    let cloud = Fake::new("cloud-a", false, steps.clone());
    let local = Fake::new("local-a", true, steps.clone());
    let mut run = started(&[&cloud, &local], true, true).await;
    assert_eq!(drain_text(&mut run).await, "fine");
    assert_eq!(
        *local.prepared.lock().unwrap(),
        [None],
        "prepared once, from the start of the answer"
    );
    assert_eq!(local.calls.load(Ordering::SeqCst), 0);

    // A longer answer: the warm fallback is given the text sent so far every
    // 16 pieces, so a handover evaluates at most 16 pieces of it.
    let words: Vec<Step> = (0..40).map(|_| Step::Text("w ")).chain([Step::Finish]).collect();
    let cloud = Fake::new("cloud-a", false, words);
    let local = Fake::new("local-a", true, steps.clone());
    let mut run = started(&[&cloud, &local], true, true).await;
    drain_text(&mut run).await;
    assert_eq!(
        *local.prepared.lock().unwrap(),
        [None, Some("w ".repeat(16)), Some("w ".repeat(32))]
    );
    // Each prefill is stopped when a newer one supersedes it, and the last
    // when the run ends (the answer is over, or the app went away).
    let stopped = || -> Vec<bool> {
        let stops = local.prepare_stops.lock().unwrap();
        stops.iter().map(|s| s.load(Ordering::SeqCst)).collect()
    };
    assert_eq!(stopped(), [true, true, false]);
    drop(run);
    assert_eq!(stopped(), [true, true, true]);

    // Off: nothing is prepared.
    let cloud = Fake::new("cloud-a", false, steps.clone());
    let local = Fake::new("local-a", true, steps);
    let mut run = started(&[&cloud, &local], true, false).await;
    drain_text(&mut run).await;
    assert!(local.prepared.lock().unwrap().is_empty());
}

/// Tool-call deltas that reached the app, as `(index, id, arguments)`.
type Calls = Vec<(u32, Option<String>, String)>;

/// Runs the chat over `backends` in order: the tool-call deltas handed out,
/// the error that ended the answer if any, and the run.
async fn tool_run(
    backends: &[&Arc<Fake>],
    cloud_allowed: bool,
) -> (Calls, Option<api::ApiError>, gateway::engine::Run) {
    let mut run = started(backends, cloud_allowed, false).await;
    let mut calls = Vec::new();
    while let Some(ev) = run.next_event().await {
        match ev {
            Ok(Event::ToolCall {
                index, id, arguments, ..
            }) => calls.push((index, id, arguments)),
            Ok(_) => {}
            Err(e) => return (calls, Some(e), run),
        }
    }
    (calls, None, run)
}

#[tokio::test]
async fn a_tool_call_cut_halfway_is_made_again_by_the_successor_with_its_indexes() {
    let a = Fake::new(
        "cloud-a",
        false,
        vec![
            Step::Text("Checking. "),
            Step::Tool(0, Some("call_a0"), r#"{"city":"Oslo"}"#),
            Step::Logprobs,
            Step::Tool(1, Some("call_a1"), r#"{"ci"#),
            Step::Fail(BackendErrorKind::Interrupted),
        ],
    );
    let b = Fake::new(
        "cloud-b",
        false,
        vec![
            Step::Tool(0, Some("call_b0"), r#"{"city":"#),
            Step::Tool(0, None, r#""Oslo"}"#),
            Step::Tool(1, Some("call_b1"), r#"{"city":"Bergen"}"#),
            Step::Finish,
        ],
    );
    let (calls, err, run) = tool_run(&[&a, &b], true).await;
    assert!(err.is_none(), "{err:?}");
    let own = |i: u32, id: Option<&str>, args: &str| (i, id.map(str::to_owned), args.to_owned());
    assert_eq!(
        calls,
        [
            own(0, Some("call_b0"), r#"{"city":"#),
            own(0, None, r#""Oslo"}"#),
            own(1, Some("call_b1"), r#"{"city":"Bergen"}"#),
        ],
        "none of cloud-a's half-made calls reached the app"
    );
    assert_eq!(b.seen.lock().unwrap()[0].as_deref(), Some("Checking. "));
    assert!(run.info.handovers[0].after_content);

    // Cut before any text: the successor starts afresh, invisibly.
    let a = Fake::new(
        "cloud-a",
        false,
        vec![Step::Tool(0, Some("call_a0"), "{"), Step::Fail(BackendErrorKind::Stall)],
    );
    let (calls, err, run) = tool_run(&[&a, &b], true).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].1.as_deref(), Some("call_b0"));
    assert!(!run.info.handovers[0].after_content);
}

#[tokio::test]
async fn tool_calls_stream_live_when_no_successor_could_take_over() {
    let steps = vec![
        Step::Tool(0, Some("call_a0"), r#"{"ci"#),
        Step::Fail(BackendErrorKind::Interrupted),
    ];
    // The only successor is the cloud, which privacy forbids: nobody could
    // redo the call, so its deltas go out as they come and the cut is an error.
    let a = Fake::new("local-a", true, steps.clone());
    let cloud = Fake::new("cloud-a", false, vec![Step::Finish]);
    let (calls, err, _) = tool_run(&[&a, &cloud], false).await;
    assert_eq!(calls.len(), 1, "the delta went out before the cut");
    assert!(err.is_some(), "half a call is never passed off as whole");
    assert_eq!(cloud.calls.load(Ordering::SeqCst), 0);
}

/// A started run of the test chat under a cascade over `local` then
/// `cloud`, judging the first two tokens.
async fn cascade_started(local: &Arc<Fake>, cloud: &Arc<Fake>) -> gateway::engine::Run {
    let mut p = plan(&[local, cloud], true, false);
    p.cascade = Some(gateway::engine::Cascade {
        hold_tokens: 2,
        min_mean_logprob: -1.0,
    });
    let mut run = gateway::engine::Run::new(api::ChatRequest::from_slice(CHAT.as_bytes()).unwrap(), p);
    run.start().await.unwrap();
    run
}

/// A cascade escalates an unsure local start to the cloud; when the cloud
/// then fails before content, the local model answers after all (once, not
/// tested again) rather than the app getting an error.
#[tokio::test]
async fn a_cascade_whose_cloud_fails_falls_back_to_the_local_model() {
    let local = Fake::new(
        "local-a",
        true,
        vec![Step::Unsure("maybe "), Step::Unsure("so."), Step::Finish],
    );
    let cloud = Fake::new("cloud-a", false, vec![Step::Fail(BackendErrorKind::Connect)]);
    let mut run = cascade_started(&local, &cloud).await;
    assert_eq!(drain_text(&mut run).await, "maybe so.");
    assert_eq!(
        local.calls.load(Ordering::SeqCst),
        2,
        "the unsure start, then the last resort"
    );
    assert_eq!(cloud.calls.load(Ordering::SeqCst), 1);
    let reasons: Vec<(&str, &str, &str)> = run
        .info
        .handovers
        .iter()
        .map(|h| (h.from.as_str(), h.to.as_str(), h.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("local-a", "cloud-a", "low_confidence"),
            ("cloud-a", "local-a", "connect")
        ]
    );

    // Also after a cloud error no other backend would be tried after.
    let local = Fake::new(
        "local-a",
        true,
        vec![Step::Unsure("maybe "), Step::Unsure("so."), Step::Finish],
    );
    let cloud = Fake::refusing("cloud-a", false, BackendErrorKind::Cancelled);
    let mut run = cascade_started(&local, &cloud).await;
    assert_eq!(drain_text(&mut run).await, "maybe so.");

    // A confident start is not escalated.
    let local = Fake::new("local-a", true, vec![Step::Text("sure."), Step::Finish]);
    let cloud = Fake::new("cloud-a", false, vec![Step::Text("cloud."), Step::Finish]);
    let mut run = cascade_started(&local, &cloud).await;
    assert_eq!(drain_text(&mut run).await, "sure.");
    assert_eq!(cloud.calls.load(Ordering::SeqCst), 0);
}

/// Redact-then-cloud: the cloud breaks while the start of a placeholder is
/// held back. It is not shown raw; the local model continues from what the
/// app has seen.
#[tokio::test]
async fn a_break_inside_a_placeholder_shows_none_of_it() {
    let req = api::ChatRequest::from_slice(
        br#"{"model":"auto","messages":[{"role":"user","content":"My card is 4111 1111 1111 1111. Is it valid?"}]}"#,
    )
    .unwrap();
    let scores = state(vec![Fake::new("local-a", true, vec![])], "local-a")
        .routing
        .score(&req);
    let redact = gateway::engine::Redact::new(&req, &scores);
    assert_eq!(redact.redaction.map.len(), 1, "{:?}", scores.entities);

    let cloud = Fake::new(
        "cloud-a",
        false,
        vec![
            Step::Text("Your card "),
            Step::Text("[CREDIT_CA"),
            Step::Fail(BackendErrorKind::Interrupted),
        ],
    );
    let local = Fake::new("local-a", true, vec![Step::Text("looks valid."), Step::Finish]);
    let mut p = plan(&[&cloud, &local], true, false);
    p.redact = Some(redact);
    let mut run = gateway::engine::Run::new(req, p);
    run.start().await.unwrap();
    assert_eq!(drain_text(&mut run).await, "Your card looks valid.");
    assert_eq!(*local.seen.lock().unwrap(), [Some("Your card ".to_owned())]);
}

/// A local model whose speed is not measured yet (loaded on demand) is not
/// taken for a device too slow to answer: `local_tps` keeps its default.
#[tokio::test]
async fn an_unmeasured_local_speed_is_not_zero() {
    struct Measured(Option<f64>);
    impl Probe for Measured {
        fn health(&self) -> TierHealth {
            TierHealth {
                ready: true,
                tps: self.0,
                ..Default::default()
            }
        }
        fn status(&self) -> Value {
            json!({})
        }
    }
    let local = Fake::new("local-a", true, vec![Step::Finish]);
    let st = state(vec![local.clone()], "local-a");
    let req = api::ChatRequest::from_slice(CHAT.as_bytes()).unwrap();
    let headers = axum::http::HeaderMap::new();
    let scores = st.routing.score(&req);
    let tps = |measured: Option<f64>| {
        let tiers = Tiers {
            tiers: vec![Tier {
                name: "local-a".into(),
                backend: local.clone() as Arc<dyn Backend>,
                probe: Arc::new(Measured(measured)),
            }],
        };
        st.routing.signals(&req, &headers, &scores, Some(&tiers)).local_tps
    };
    assert_eq!(tps(None), policy::Signals::default().local_tps);
    assert!(tps(None) >= 8.0, "{}", tps(None));
    assert_eq!(tps(Some(5.5)), 5.5);
}

/// Non-stream answers from backends that speak OpenAI pass through whole,
/// also after a failover: with `n` = 2 the local model (one answer) is
/// skipped, a failing cloud tier is followed by the next, whose every
/// choice and field reaches the app.
#[tokio::test]
async fn several_choices_pass_through_from_the_cloud_after_failovers() {
    let local = Fake::new("local-a", true, vec![Step::Text("one answer"), Step::Finish]);
    let broken = Fake::refusing("cloud-a", false, BackendErrorKind::Unavailable);
    *broken.raw.lock().unwrap() = Some(json!({}));
    let cloud = Fake::new("cloud-b", false, vec![]);
    let answer = json!({"id": "up-1", "object": "chat.completion", "created": 1, "model": "big",
        "system_fingerprint": "fp_1",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "A"}, "finish_reason": "stop", "logprobs": null},
            {"index": 1, "message": {"role": "assistant", "content": "B"}, "finish_reason": "stop", "logprobs": null}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}});
    *cloud.raw.lock().unwrap() = Some(answer.clone());
    let policy = "version = 1\ndefault_local = \"local-a\"\n[[rule]]\nname = \"all\"\nwhen = \"true\"\n\
                  target = \"local-a\"\nfallbacks = [\"cloud-a\", \"cloud-b\"]\n";
    let st = state_with_policy(vec![local.clone(), broken.clone(), cloud.clone()], policy);
    let body = CHAT.replace(r#""model":"auto","#, r#""model":"auto","n":2,"#);
    let (status, headers, text) = send(&st, post(&body)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-tandem-route"], "cloud-b");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"], answer["choices"]);
    assert_eq!(v["system_fingerprint"], "fp_1");
    assert_eq!(v["model"], "auto");
    let hops: Vec<(&str, &str, &str)> = v["tandem"]["handovers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["from"].as_str().unwrap(),
                h["to"].as_str().unwrap(),
                h["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hops,
        [
            ("local-a", "cloud-a", "unsupported"),
            ("cloud-a", "cloud-b", "unavailable")
        ]
    );
    assert_eq!(local.calls.load(Ordering::SeqCst), 0, "the local model was not asked");

    // One choice: the local model answers first, as the policy says.
    let (status, headers, text) = send(&st, post(CHAT)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-tandem-route"], "local-a");

    // Under a cascade too (the local model cannot give several choices).
    let policy = "version = 1\ndefault_local = \"local-a\"\ndefault_cloud = \"cloud-b\"\n\
                  [[rule]]\nname = \"all\"\nwhen = \"true\"\ntarget = \"cascade\"\n";
    let st = state_with_policy(vec![local.clone(), cloud.clone()], policy);
    let (status, headers, text) = send(&st, post(&body)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-tandem-route"], "cloud-b");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"], answer["choices"]);
}

/// A backend that ends without a finish reason (a server that sends none)
/// still gives the app a finish chunk, with or without usage.
#[tokio::test]
async fn a_stream_without_a_finish_reason_gets_one() {
    let local = Fake::new("local-a", true, vec![Step::Text("a"), Step::Text("b")]);
    let st = state(vec![local], "local-a");
    let plain = CHAT_STREAM.replace(r#""stream_options":{"include_usage":true},"#, "");
    for (body, usage) in [(plain.as_str(), false), (CHAT_STREAM, true)] {
        let (status, _, text) = send(&st, post(body)).await;
        assert_eq!(status, 200);
        let events = sse_json(&text);
        assert_eq!(sse_text(&events), "ab");
        let finishes: Vec<&Value> = events
            .iter()
            .filter_map(|e| e["choices"][0]["finish_reason"].as_str().map(|_| e))
            .collect();
        assert_eq!(finishes.len(), 1, "{text}");
        assert_eq!(finishes[0]["choices"][0]["finish_reason"], "stop");
        let last = events.last().unwrap();
        assert_eq!(last["tandem"]["route"], "local-a", "{text}");
        assert_eq!(last.get("usage").is_some(), usage, "{text}");
        for e in &events {
            assert!(e["choices"][0].is_object() || e.get("usage").is_some(), "{text}");
        }
    }
}
