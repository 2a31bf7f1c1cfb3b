//! Outcomes of many requests, counted: each request is `completed` (a 200
//! that ended with `[DONE]` and no error event), `error_event`,
//! `http_STATUS`, `no_done` (the stream ended without `[DONE]`), `timeout`
//! or `transport` (the connection failed); plus the handovers Tandem
//! reports in the final chunk's `tandem` object, the route that finished
//! each answer, and whether the answers agree.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{Value, json};

use crate::request::{self, Outcome};
use crate::stats;

/// How many distinct error messages are kept as examples.
const ERROR_EXAMPLES: usize = 8;

#[derive(Default)]
pub struct Tally {
    pub kinds: BTreeMap<String, u64>,
    /// `tandem.route` of each answer: the backend that finished it.
    pub routes: BTreeMap<String, u64>,
    /// Requests whose answer went through at least one handover.
    pub with_handover: u64,
    pub handovers: u64,
    /// Handovers after content had reached the client (continuations).
    pub after_content: u64,
    /// `from->to reason` → count.
    pub paths: BTreeMap<String, u64>,
    /// Answer text → count, over completed requests (when text was kept).
    pub answers: HashMap<String, u64>,
    /// First few distinct error messages, with their kind.
    pub error_examples: Vec<String>,
    pub ttfb: Vec<Duration>,
    pub first: Vec<Duration>,
    pub last: Vec<Duration>,
}

impl Tally {
    /// Counts one request: its outcome, or the error `send` returned.
    pub fn add(&mut self, result: &anyhow::Result<Outcome>) {
        match result {
            Ok(o) => self.add_outcome(o),
            Err(e) => {
                let kind = if request::is_timeout(e) { "timeout" } else { "transport" };
                self.count(kind, Some(&format!("{e:#}")));
            }
        }
    }

    fn count(&mut self, kind: &str, message: Option<&str>) {
        *self.kinds.entry(kind.to_owned()).or_default() += 1;
        if kind != "completed" && self.error_examples.len() < ERROR_EXAMPLES {
            let m = format!("{kind}: {}", message.unwrap_or("(no message)"));
            if !self.error_examples.contains(&m) {
                self.error_examples.push(m);
            }
        }
    }

    fn add_outcome(&mut self, o: &Outcome) {
        let kind = o.kind();
        self.count(&kind, o.error_message.as_deref());
        if let Some(t) = &o.tandem {
            if let Some(r) = t.get("route").and_then(Value::as_str) {
                *self.routes.entry(r.to_owned()).or_default() += 1;
            }
            let hs = t
                .get("handovers")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            if !hs.is_empty() {
                self.with_handover += 1;
            }
            for h in hs {
                self.handovers += 1;
                if h.get("after_content").and_then(Value::as_bool) == Some(true) {
                    self.after_content += 1;
                }
                let s = |k: &str| h.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
                *self
                    .paths
                    .entry(format!("{}->{} {}", s("from"), s("to"), s("reason")))
                    .or_default() += 1;
            }
        }
        if kind == "completed" {
            self.ttfb.push(o.ttfb);
            self.first.extend(o.first_content);
            self.last.push(o.last_byte);
            if !o.text.is_empty() {
                *self.answers.entry(o.text.clone()).or_default() += 1;
            }
        }
    }

    /// Adds another tally's counts and samples to this one.
    pub fn merge(&mut self, other: Tally) {
        let add = |into: &mut BTreeMap<String, u64>, from: BTreeMap<String, u64>| {
            for (k, v) in from {
                *into.entry(k).or_default() += v;
            }
        };
        add(&mut self.kinds, other.kinds);
        add(&mut self.routes, other.routes);
        add(&mut self.paths, other.paths);
        self.with_handover += other.with_handover;
        self.handovers += other.handovers;
        self.after_content += other.after_content;
        for (k, v) in other.answers {
            *self.answers.entry(k).or_default() += v;
        }
        for e in other.error_examples {
            if self.error_examples.len() < ERROR_EXAMPLES && !self.error_examples.contains(&e) {
                self.error_examples.push(e);
            }
        }
        self.ttfb.extend(other.ttfb);
        self.first.extend(other.first);
        self.last.extend(other.last);
    }

    pub fn total(&self) -> u64 {
        self.kinds.values().sum()
    }

    pub fn completed(&self) -> u64 {
        self.kinds.get("completed").copied().unwrap_or(0)
    }

    /// The counts and percentiles (sorts the samples).
    pub fn to_json(&mut self) -> Value {
        let most_common = self.answers.values().copied().max().unwrap_or(0);
        json!({
            "requests": self.total(),
            "completed": self.completed(),
            "failed": self.total() - self.completed(),
            "kinds": self.kinds,
            "routes": self.routes,
            "handovers": {
                "requests": self.with_handover,
                "total": self.handovers,
                "after_content": self.after_content,
                "paths": self.paths,
            },
            "answers": {"distinct": self.answers.len(), "most_common": most_common},
            "error_examples": self.error_examples,
            "ttfb_ms": stats::summary(&mut self.ttfb),
            "first_content_ms": stats::summary(&mut self.first),
            "last_byte_ms": stats::summary(&mut self.last),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::request::TimedOut;

    fn outcome(status: u16, done: bool, error: bool, tandem: Value, text: &str) -> Outcome {
        Outcome {
            status,
            done,
            error_event: error,
            error_message: error.then(|| "boom".to_owned()),
            tandem: Some(tandem),
            text: text.to_owned(),
            last_byte: Duration::from_millis(10),
            first_content: Some(Duration::from_millis(2)),
            ..Outcome::default()
        }
    }

    #[test]
    fn classifies_and_counts_handovers() {
        let mut t = Tally::default();
        let plain = json!({"route": "cloud", "handovers": []});
        let cont = json!({"route": "cloud-backup", "handovers": [
            {"from": "cloud", "to": "cloud-backup", "reason": "interrupted", "after_content": true}]});
        t.add(&Ok(outcome(200, true, false, plain.clone(), "a b c")));
        t.add(&Ok(outcome(200, true, false, cont, "a b c")));
        t.add(&Ok(outcome(200, true, false, plain.clone(), "a b x")));
        t.add(&Ok(outcome(200, true, true, plain.clone(), "a")));
        t.add(&Ok(outcome(503, true, true, plain.clone(), "")));
        t.add(&Ok(outcome(200, false, false, plain, "a")));
        t.add(&Err(anyhow::Error::new(TimedOut(Duration::from_secs(1)))));
        t.add(&Err(anyhow::anyhow!("connection reset")));
        let v = t.to_json();
        assert_eq!(v["requests"], 8);
        assert_eq!(v["completed"], 3);
        assert_eq!(v["failed"], 5);
        for k in ["error_event", "http_503", "no_done", "timeout", "transport"] {
            assert_eq!(v["kinds"][k], 1, "{k}: {v}");
        }
        assert_eq!(v["routes"]["cloud"], 5);
        assert_eq!(v["routes"]["cloud-backup"], 1);
        assert_eq!(v["handovers"]["requests"], 1);
        assert_eq!(v["handovers"]["after_content"], 1);
        assert_eq!(v["handovers"]["paths"]["cloud->cloud-backup interrupted"], 1);
        assert_eq!(v["answers"]["distinct"], 2);
        assert_eq!(v["answers"]["most_common"], 2);
        assert_eq!(v["last_byte_ms"]["n"], 3);
        assert!(
            v["error_examples"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e == "timeout: no complete response within 1s")
        );

        let mut more = Tally::default();
        more.add(&Ok(outcome(
            200,
            true,
            false,
            json!({"route": "cloud", "handovers": []}),
            "a b c",
        )));
        more.add(&Err(anyhow::anyhow!("connection reset")));
        t.merge(more);
        let v = t.to_json();
        assert_eq!(v["requests"], 10);
        assert_eq!(v["completed"], 4);
        assert_eq!(v["kinds"]["transport"], 2);
        assert_eq!(v["answers"]["most_common"], 3);
        assert_eq!(v["handovers"]["total"], 1);
        assert_eq!(v["last_byte_ms"]["n"], 4);
    }
}
