//! Rendering events as OpenAI responses: SSE chunks for a stream, one
//! `chat.completion` object otherwise. One `Renderer` per answer carries the
//! answer's single `id`, `created` and `model`.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::event::{Event, FinishReason, Usage};

/// Where an answer came from and why: the `tandem` object of every response.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TandemInfo {
    /// The backend that produced (the end of) the answer.
    pub route: String,
    /// The policy rule that decided, or the reason when no policy ran.
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores: Option<Value>,
    /// Entity labels found in the request (never their values).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<String>,
    /// Whether the decision allowed the text to leave the device.
    pub cloud_allowed: bool,
    /// Backends that failed and were replaced, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handovers: Vec<Handover>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Handover {
    pub from: String,
    pub to: String,
    /// Error kind that caused it (`connect`, `stall`, `interrupted`, …).
    pub reason: String,
    /// Whether content had already reached the app.
    pub after_content: bool,
}

pub struct Renderer {
    id: String,
    created: u64,
    model: String,
    /// The role chunk opens the stream once, whichever backend starts it.
    role_sent: bool,
    /// Every chunk of this answer up to its delta: `data: {"id":…,
    /// "object":…,"created":…,"model":…,"choices":[{"index":0,"delta":`.
    /// Text and finish chunks are this, the escaped delta and a fixed tail:
    /// no JSON tree is built per token.
    head: Vec<u8>,
}

/// What follows the delta of a chunk without a finish reason.
const TAIL_OPEN: &[u8] = b",\"finish_reason\":null}]}\n\n";

impl Renderer {
    pub fn new(id: String, created: u64, model: String) -> Self {
        let mut head = Vec::with_capacity(128 + id.len() + model.len());
        head.extend_from_slice(b"data: {\"id\":");
        write_json_str(&mut head, &id);
        head.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        head.extend_from_slice(created.to_string().as_bytes());
        head.extend_from_slice(b",\"model\":");
        write_json_str(&mut head, &model);
        head.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":");
        Renderer {
            id,
            created,
            model,
            role_sent: false,
            head,
        }
    }

    /// The `model` every response of this answer names.
    pub fn model(&self) -> &str {
        &self.model
    }

    fn chunk(&self, delta: Value, finish: Option<FinishReason>, extra: Option<(&str, Value)>) -> Vec<u8> {
        let mut choice = json!({"index": 0, "delta": delta, "finish_reason": finish.map(FinishReason::as_str)});
        if let Some((k, v)) = extra
            && let Some(obj) = choice.as_object_mut()
        {
            obj.insert(k.to_owned(), v);
        }
        let v = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        });
        sse_data(&v)
    }

    /// A chunk from the fixed head, the delta `write_delta` writes as JSON
    /// straight into it (about `delta_len` bytes), and the tail.
    fn fast_chunk(&self, delta_len: usize, write_delta: impl FnOnce(&mut Vec<u8>), tail: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + delta_len + tail.len());
        out.extend_from_slice(&self.head);
        write_delta(&mut out);
        out.extend_from_slice(tail);
        out
    }

    /// The first chunk: the role, no content.
    pub fn role_chunk(&mut self) -> Option<Vec<u8>> {
        if self.role_sent {
            return None;
        }
        self.role_sent = true;
        const ROLE: &[u8] = br#"{"role":"assistant","content":""}"#;
        Some(self.fast_chunk(ROLE.len(), |o| o.extend_from_slice(ROLE), TAIL_OPEN))
    }

    /// The chunk for one event; `None` for events that are not chunks
    /// (usage goes in the final chunk).
    pub fn event_chunk(&mut self, ev: &Event) -> Option<Vec<u8>> {
        match ev {
            Event::Text { text, .. } if !text.is_empty() => {
                let write = |o: &mut Vec<u8>| {
                    o.extend_from_slice(b"{\"content\":");
                    write_json_str(o, text);
                    o.push(b'}');
                };
                Some(self.fast_chunk(text.len() + 16, write, TAIL_OPEN))
            }
            Event::Text { .. } | Event::Usage(_) => None,
            Event::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                let mut call = Map::new();
                call.insert("index".into(), json!(index));
                if let Some(id) = id {
                    call.insert("id".into(), json!(id));
                    call.insert("type".into(), json!("function"));
                }
                let mut function = Map::new();
                if let Some(name) = name {
                    function.insert("name".into(), json!(name));
                }
                function.insert("arguments".into(), json!(arguments));
                call.insert("function".into(), Value::Object(function));
                Some(self.chunk(json!({"tool_calls": [Value::Object(call)]}), None, None))
            }
            Event::Logprobs(lp) => Some(self.chunk(json!({}), None, Some(("logprobs", lp.clone())))),
            Event::Aside { text, .. } if text.is_empty() => None,
            Event::Aside { key, text } => Some(self.chunk(json!({ key: text }), None, None)),
            Event::Finish(reason) => Some(self.finish_chunk(*reason, None)),
        }
    }

    /// The chunk with the finish reason, with the `tandem` object when given.
    fn finish_chunk(&self, reason: FinishReason, tandem: Option<&TandemInfo>) -> Vec<u8> {
        let mut tail = Vec::with_capacity(64);
        tail.extend_from_slice(b"},\"finish_reason\":\"");
        tail.extend_from_slice(reason.as_str().as_bytes());
        tail.extend_from_slice(b"\"}]");
        if let Some(t) = tandem {
            tail.extend_from_slice(b",\"tandem\":");
            // Serialising plain data into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut tail, t);
        }
        tail.extend_from_slice(b"}\n\n");
        self.fast_chunk(1, |o| o.push(b'{'), &tail)
    }

    /// The end of a stream: the finish chunk, then the `tandem` object and
    /// `[DONE]`. With `include_usage` the object rides on a last chunk
    /// without a choice, with the usage, as OpenAI sends usage — `null` when
    /// no backend reported any (a server that ignores `stream_options`),
    /// never made-up zeros; otherwise on the finish chunk, so that every
    /// chunk has a choice (SDK loops read `choices[0]`).
    pub fn end(&self, reason: FinishReason, include_usage: bool, usage: Option<Usage>, tandem: &TandemInfo) -> Vec<u8> {
        if !include_usage {
            let mut out = self.finish_chunk(reason, Some(tandem));
            out.extend_from_slice(DONE);
            return out;
        }
        let mut out = self.finish_chunk(reason, None);
        out.extend(sse_data(&json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "tandem": tandem,
            "usage": usage,
        })));
        out.extend_from_slice(DONE);
        out
    }

    /// An explicit error event: the stream could not be finished. Apps see it
    /// before `[DONE]`, never a silent cut.
    pub fn error_chunk(&self, err: &crate::error::ApiError, tandem: &TandemInfo) -> Vec<u8> {
        let mut v = err.to_value();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("tandem".into(), json!(tandem));
        }
        let mut out = sse_data(&v);
        out.extend_from_slice(DONE);
        out
    }
}

pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// Appends `s` as a JSON string literal (quoted and escaped).
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(out, s);
}

pub fn sse_data(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    // Serialising a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, v);
    out.extend_from_slice(b"\n\n");
    out
}

/// Collects events into one `chat.completion` (for non-stream requests).
#[derive(Debug, Default)]
pub struct Aggregate {
    pub text: String,
    /// `Aside` texts by key, in order of first appearance.
    pub asides: Vec<(String, String)>,
    /// Tool calls by the upstream's index (id, name, arguments): in index
    /// order, without placeholders for indexes never sent, and with no
    /// allocation sized by an index an upstream chose.
    pub tool_calls: std::collections::BTreeMap<u32, (Option<String>, Option<String>, String)>,
    pub finish: Option<FinishReason>,
    pub usage: Usage,
    pub saw_usage: bool,
}

impl Aggregate {
    pub fn push(&mut self, ev: Event) {
        match ev {
            Event::Text { text, .. } => self.text.push_str(&text),
            Event::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                let slot = self.tool_calls.entry(index).or_default();
                if id.is_some() {
                    slot.0 = id;
                }
                if name.is_some() {
                    slot.1 = name;
                }
                slot.2.push_str(&arguments);
            }
            Event::Logprobs(_) => {}
            Event::Aside { key, text } => match self.asides.iter_mut().find(|(k, _)| *k == key) {
                Some((_, t)) => t.push_str(&text),
                None => self.asides.push((key, text)),
            },
            Event::Finish(f) => self.finish = Some(f),
            Event::Usage(u) => {
                self.usage.add(u);
                self.saw_usage = true;
            }
        }
    }

    pub fn into_completion(self, r: &Renderer, tandem: &TandemInfo) -> Value {
        let mut message = json!({"role": "assistant", "content": self.text});
        if let Some(obj) = message.as_object_mut() {
            for (key, text) in self.asides {
                obj.entry(key).or_insert(Value::String(text));
            }
        }
        if !self.tool_calls.is_empty()
            && let Some(obj) = message.as_object_mut()
        {
            let calls: Vec<Value> = self
                .tool_calls
                .into_values()
                .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
                .collect();
            obj.insert("tool_calls".into(), Value::Array(calls));
        }
        json!({
            "id": r.id,
            "object": "chat.completion",
            "created": r.created,
            "model": r.model,
            "choices": [{
                "index": 0,
                "message": message,
                "finish_reason": self.finish.unwrap_or(FinishReason::Stop).as_str(),
            }],
            "usage": self.usage,
            "tandem": tandem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asides_keep_their_key_in_chunks_and_in_the_completion() {
        let aside = |key: &str, text: &str| Event::Aside {
            key: key.into(),
            text: text.into(),
        };
        let mut r = Renderer::new("chatcmpl-1".into(), 42, "auto".into());
        let c = r.event_chunk(&aside("reasoning_content", "Think")).unwrap();
        let v: Value = serde_json::from_slice(c.strip_prefix(b"data: ").unwrap().trim_ascii()).unwrap();
        assert_eq!(v["choices"][0]["delta"], json!({"reasoning_content": "Think"}));
        assert!(r.event_chunk(&aside("refusal", "")).is_none());

        let mut agg = Aggregate::default();
        for ev in [
            aside("reasoning_content", "Think"),
            aside("reasoning_content", " more."),
            Event::text("Answer"),
            aside("refusal", "no"),
        ] {
            agg.push(ev);
        }
        let done = agg.into_completion(&r, &TandemInfo::default());
        let msg = &done["choices"][0]["message"];
        assert_eq!(msg["content"], "Answer");
        assert_eq!(msg["reasoning_content"], "Think more.");
        assert_eq!(msg["refusal"], "no");
    }

    #[test]
    fn chunks_share_id_and_created() {
        let mut r = Renderer::new("chatcmpl-1".into(), 42, "auto".into());
        let a = r.role_chunk().unwrap();
        assert!(r.role_chunk().is_none());
        let b = r.event_chunk(&Event::text("hé")).unwrap();
        for c in [a, b] {
            let s = std::str::from_utf8(&c).unwrap();
            let v: Value = serde_json::from_str(s.strip_prefix("data: ").unwrap().trim()).unwrap();
            assert_eq!(v["id"], "chatcmpl-1");
            assert_eq!(v["created"], 42);
        }
        let end = r.end(FinishReason::Stop, true, Some(Usage::new(3, 4)), &TandemInfo::default());
        assert!(end.ends_with(DONE));
        let usage_of = |end: &[u8]| -> Value {
            let s = std::str::from_utf8(end.strip_suffix(DONE).unwrap()).unwrap();
            let last = s.trim_end().rsplit("\n\n").next().unwrap();
            serde_json::from_str::<Value>(last.strip_prefix("data: ").unwrap()).unwrap()["usage"].clone()
        };
        assert_eq!(usage_of(&end)["total_tokens"], 7);
        // Nobody reported usage: the chunk says so, it does not invent zeros.
        let end = r.end(FinishReason::Stop, true, None, &TandemInfo::default());
        assert_eq!(usage_of(&end), Value::Null);
    }

    /// The chunks written from the fixed head are the same JSON as the
    /// ones built as a tree, whatever the text holds.
    #[test]
    fn fast_chunks_match_the_json_tree() {
        let parse = |c: &[u8]| -> Value {
            let s = std::str::from_utf8(c).unwrap();
            assert!(s.starts_with("data: ") && s.ends_with("\n\n"), "{s:?}");
            serde_json::from_str(s["data: ".len()..].trim_end()).unwrap()
        };
        let mut r = Renderer::new("chatcmpl-\"q\"".into(), 7, "m\\odel\u{1}".into());
        let role = r.role_chunk().unwrap();
        assert_eq!(
            parse(&role),
            parse(&r.chunk(json!({"role": "assistant", "content": ""}), None, None))
        );
        for text in [
            "plain",
            "quote \" backslash \\ newline \n tab \t",
            "\u{0}\u{1f}",
            "中文 🎉",
            "</script>",
        ] {
            let fast = r.event_chunk(&Event::text(text)).unwrap();
            assert_eq!(
                parse(&fast),
                parse(&r.chunk(json!({"content": text}), None, None)),
                "{text:?}"
            );
        }
        for reason in [FinishReason::Stop, FinishReason::Length, FinishReason::ToolCalls] {
            let fast = r.event_chunk(&Event::Finish(reason)).unwrap();
            assert_eq!(parse(&fast), parse(&r.chunk(json!({}), Some(reason), None)));
        }
        // The end without usage: the finish chunk with the `tandem` object.
        let info = TandemInfo {
            route: "lo\"cal".into(),
            ..TandemInfo::default()
        };
        let end = r.end(FinishReason::Stop, false, None, &info);
        let chunk = end.strip_suffix(DONE).unwrap();
        let mut want = parse(&r.chunk(json!({}), Some(FinishReason::Stop), None));
        want["tandem"] = json!(info);
        assert_eq!(parse(chunk), want);
    }

    #[test]
    fn aggregate_tool_calls_by_index() {
        let mut a = Aggregate::default();
        a.push(Event::ToolCall {
            index: 0,
            id: Some("c1".into()),
            name: Some("f".into()),
            arguments: "{\"a\"".into(),
        });
        a.push(Event::ToolCall {
            index: 0,
            id: None,
            name: None,
            arguments: ":1}".into(),
        });
        a.push(Event::Finish(FinishReason::ToolCalls));
        let r = Renderer::new("x".into(), 1, "m".into());
        let v = a.into_completion(&r, &TandemInfo::default());
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    }

    /// An upstream whose first call has index 1, or a huge index, gets its
    /// calls in index order with no empty call before them (and no
    /// allocation sized by the index).
    #[test]
    fn aggregate_tool_calls_keeps_only_sent_indexes() {
        let mut a = Aggregate::default();
        for (index, id) in [(u32::MAX, "late"), (1, "first")] {
            a.push(Event::ToolCall {
                index,
                id: Some(id.into()),
                name: Some("f".into()),
                arguments: "{}".into(),
            });
        }
        let r = Renderer::new("x".into(), 1, "m".into());
        let v = a.into_completion(&r, &TandemInfo::default());
        let calls = v["choices"][0]["message"]["tool_calls"].as_array().unwrap();
        let ids: Vec<&str> = calls.iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["first", "late"]);
    }
}
