//! A tiny scripted HTTP/1.1 server on 127.0.0.1:0 (plain or TLS), so tests
//! decide byte by byte what the "cloud" sends: statuses, SSE chunks, stalls,
//! cuts at exact points. It records every request and counts the
//! connections the client closed while the server was waiting on them.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// What the server does, in order, for one request.
#[derive(Debug, Clone)]
pub enum Step {
    /// A complete response with this status, extra headers and JSON body.
    Status(u16, Vec<(&'static str, String)>, Value),
    /// `200` with `text/event-stream` and chunked encoding.
    SseHead,
    /// One SSE `data:` event holding this JSON, as one HTTP chunk.
    Data(Value),
    /// Raw bytes as one HTTP chunk.
    Raw(&'static str),
    /// `data: [DONE]` and the end of the chunked body.
    Done,
    /// The end of the chunked body, without `[DONE]`.
    End,
    Sleep(u64),
    /// Close the connection now.
    Cut,
    /// Wait until the client closes the connection, and count it.
    HoldUntilClosed,
}

pub type Script = dyn Fn(usize) -> Vec<Step> + Send + Sync;

pub struct Server {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    connections: Arc<AtomicUsize>,
    disconnects: Arc<AtomicUsize>,
    notify: Arc<Notify>,
}

impl Server {
    /// Plain HTTP; `script(n)` gives the steps for the n-th request (from 0).
    pub async fn start(script: impl Fn(usize) -> Vec<Step> + Send + Sync + 'static) -> Server {
        Self::start_inner(Arc::new(script), None, false).await
    }

    /// Like `start`, but connections stay open for further requests
    /// (no `connection: close`), to observe the client's pool.
    pub async fn start_keep_alive(script: impl Fn(usize) -> Vec<Step> + Send + Sync + 'static) -> Server {
        Self::start_inner(Arc::new(script), None, true).await
    }

    pub async fn start_tls(
        acceptor: tokio_rustls::TlsAcceptor,
        script: impl Fn(usize) -> Vec<Step> + Send + Sync + 'static,
    ) -> Server {
        Self::start_inner(Arc::new(script), Some(acceptor), false).await
    }

    async fn start_inner(script: Arc<Script>, tls: Option<tokio_rustls::TlsAcceptor>, keep_alive: bool) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let server = Server {
            url: format!("{scheme}://{addr}/v1"),
            requests: Arc::default(),
            connections: Arc::default(),
            disconnects: Arc::default(),
            notify: Arc::default(),
        };
        let shared = Shared {
            script,
            requests: Arc::clone(&server.requests),
            disconnects: Arc::clone(&server.disconnects),
            notify: Arc::clone(&server.notify),
            counter: Arc::default(),
            keep_alive,
        };
        let connections = Arc::clone(&server.connections);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                connections.fetch_add(1, Ordering::SeqCst);
                // Each step is its own small write: without this, Nagle's
                // algorithm holds the second until the client's delayed ACK.
                tcp.set_nodelay(true).unwrap();
                let shared = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => shared.serve(tcp).await,
                        Some(acceptor) => {
                            // A client that refuses our certificate ends here.
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                shared.serve(stream).await;
                            }
                        }
                    }
                });
            }
        });
        server
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// True once `n` connections were closed by the client while held;
    /// false after a generous bound.
    pub async fn wait_disconnects(&self, n: usize) -> bool {
        let wait = async {
            loop {
                let notified = self.notify.notified();
                if self.disconnects.load(Ordering::SeqCst) >= n {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait).await.is_ok()
    }
}

#[derive(Clone)]
struct Shared {
    script: Arc<Script>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    disconnects: Arc<AtomicUsize>,
    notify: Arc<Notify>,
    counter: Arc<AtomicUsize>,
    keep_alive: bool,
}

impl Shared {
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, mut io: S) {
        loop {
            if !self.respond(&mut io).await || !self.keep_alive {
                let _ = io.shutdown().await;
                return;
            }
        }
    }

    /// Serves one request; false when the connection must not be reused.
    async fn respond<S: AsyncRead + AsyncWrite + Unpin>(&self, io: &mut S) -> bool {
        let close = if self.keep_alive { "" } else { "connection: close\r\n" };
        let Some(req) = read_request(io).await else {
            return false;
        };
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        self.requests.lock().unwrap().push(req);
        for step in (self.script)(n) {
            let bytes: Vec<u8> = match step {
                Step::Status(code, headers, body) => {
                    let body = serde_json::to_vec(&body).unwrap();
                    let mut head = format!(
                        "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{close}",
                        body.len()
                    );
                    for (k, v) in headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    [head.into_bytes(), body].concat()
                }
                Step::SseHead => format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n{close}\r\n"
                )
                .into_bytes(),
                Step::Data(v) => chunk(format!("data: {v}\n\n").as_bytes()),
                Step::Raw(s) => chunk(s.as_bytes()),
                Step::Done => [chunk(b"data: [DONE]\n\n"), b"0\r\n\r\n".to_vec()].concat(),
                Step::End => b"0\r\n\r\n".to_vec(),
                Step::Sleep(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    continue;
                }
                Step::Cut => return false,
                Step::HoldUntilClosed => {
                    let mut buf = [0u8; 1024];
                    loop {
                        match io.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                    self.disconnects.fetch_add(1, Ordering::SeqCst);
                    self.notify.notify_waiters();
                    return false;
                }
            };
            if io.write_all(&bytes).await.is_err() || io.flush().await.is_err() {
                return false;
            }
        }
        true
    }
}

fn chunk(payload: &[u8]) -> Vec<u8> {
    [
        format!("{:x}\r\n", payload.len()).into_bytes(),
        payload.to_vec(),
        b"\r\n".to_vec(),
    ]
    .concat()
}

async fn read_request<S: AsyncRead + Unpin>(io: &mut S) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = io.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = io.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    Some(Recorded {
        method,
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}

/// A role-only first chunk, as servers send it.
pub fn role() -> Value {
    json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]})
}

pub fn text(s: &str) -> Value {
    json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": s}, "finish_reason": null}]})
}

pub fn finish(reason: &str) -> Value {
    json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
}

pub fn usage(prompt: u32, completion: u32) -> Value {
    json!({"id": "c1", "object": "chat.completion.chunk", "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}})
}

/// A complete short answer: "Hello" in two pieces.
pub fn hello() -> Vec<Step> {
    vec![
        Step::SseHead,
        Step::Data(role()),
        Step::Data(text("Hel")),
        Step::Data(text("lo")),
        Step::Data(finish("stop")),
        Step::Data(usage(5, 2)),
        Step::Done,
    ]
}

/// A port nothing listens on.
pub async fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/v1")
}

/// A TCP relay in front of a server that can go silent: `freeze` stops
/// every connection made so far from passing anything on, either way,
/// while it stays open (a network gone away without a word, as after a
/// device's sleep); later connections pass.
pub struct Relay {
    pub addr: std::net::SocketAddr,
    /// Connections made through it so far.
    pub made: Arc<AtomicUsize>,
    /// Connections numbered below this pass nothing.
    frozen_below: Arc<AtomicUsize>,
}

impl Relay {
    /// Relays to the server at `url` (`http(s)://addr/...`).
    pub async fn start(url: &str) -> Relay {
        let to: std::net::SocketAddr = url.split('/').nth(2).unwrap().parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Relay {
            addr: listener.local_addr().unwrap(),
            made: Arc::default(),
            frozen_below: Arc::default(),
        };
        let (made, frozen_below) = (Arc::clone(&relay.made), Arc::clone(&relay.frozen_below));
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let n = made.fetch_add(1, Ordering::SeqCst);
                let server = tokio::net::TcpStream::connect(to).await.unwrap();
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                for (mut from, mut to) in [(cr, sw), (sr, cw)] {
                    let frozen_below = Arc::clone(&frozen_below);
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(read @ 1..) = from.read(&mut buf).await {
                            if n < frozen_below.load(Ordering::SeqCst) {
                                // Swallowed; both sockets stay open.
                                std::future::pending::<()>().await;
                            }
                            if to.write_all(&buf[..read]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        relay
    }

    pub fn freeze(&self) {
        self.frozen_below
            .store(self.made.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}
