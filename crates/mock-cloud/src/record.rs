//! The record of chat requests the mock received, so tests can check what the
//! "cloud" saw. A bounded ring: the oldest entry goes when it is full.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One request to `POST /v1/chat/completions`, recorded before it is answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// Arrival order, from 0, over the server's life (not reset by `clear`).
    pub seq: u64,
    pub path: String,
    /// Whether an `Authorization` header was present; its value is kept out
    /// of the record.
    pub has_authorization: bool,
    /// The raw `x-mock-fault` header.
    pub fault: Option<String>,
    /// The `x-mock-key` header (the `fail_first` counter's key).
    pub key: Option<String>,
    /// Every other header, names lower-case, values lossily UTF-8; repeated
    /// headers are joined with ", ".
    pub headers: BTreeMap<String, String>,
    /// The body as JSON; `null` when it was not valid JSON.
    pub body: Value,
    /// The status the mock answered with (200 for streams, even faulty ones).
    pub status: u16,
}

impl RecordedRequest {
    pub(crate) fn new(seq: u64, path: &str, headers: &HeaderMap) -> Self {
        let mut map = BTreeMap::<String, String>::new();
        for (name, value) in headers {
            if name == http::header::AUTHORIZATION {
                continue;
            }
            let value = String::from_utf8_lossy(value.as_bytes());
            map.entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        let text = |n: &str| {
            headers
                .get(n)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        RecordedRequest {
            seq,
            path: path.to_owned(),
            has_authorization: headers.contains_key(http::header::AUTHORIZATION),
            fault: text("x-mock-fault"),
            key: text("x-mock-key"),
            headers: map,
            body: Value::Null,
            status: 0,
        }
    }
}

/// The ring, shared by all connections. A plain mutex: each critical section
/// is one push or one copy.
#[derive(Debug)]
pub(crate) struct Record {
    limit: usize,
    entries: Mutex<VecDeque<RecordedRequest>>,
}

impl Record {
    pub fn new(limit: usize) -> Self {
        Record {
            limit,
            entries: Mutex::new(VecDeque::with_capacity(limit.min(1024))),
        }
    }

    pub fn push(&self, r: RecordedRequest) {
        if self.limit == 0 {
            return;
        }
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() >= self.limit {
            e.pop_front();
        }
        e.push_back(r);
    }

    pub fn all(&self) -> Vec<RecordedRequest> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn ring_keeps_the_newest() {
        let r = Record::new(3);
        for seq in 0..5 {
            r.push(RecordedRequest::new(seq, "/p", &HeaderMap::new()));
        }
        assert_eq!(r.all().iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3, 4]);
        r.clear();
        assert!(r.all().is_empty());
        let none = Record::new(0);
        none.push(RecordedRequest::new(0, "/p", &HeaderMap::new()));
        assert!(none.all().is_empty());
    }

    #[test]
    fn authorization_value_is_not_kept() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer secret".parse().unwrap());
        h.append("x-a", "1".parse().unwrap());
        h.append("x-a", "2".parse().unwrap());
        h.insert("x-mock-key", "k1".parse().unwrap());
        let r = RecordedRequest::new(0, "/p", &h);
        assert!(r.has_authorization);
        assert!(!serde_json::to_string(&r).unwrap().contains("secret"));
        assert_eq!(r.headers["x-a"], "1, 2");
        assert_eq!(r.key.as_deref(), Some("k1"));
    }
}
