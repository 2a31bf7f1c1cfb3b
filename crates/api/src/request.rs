//! The chat request as Tandem reads it.
//!
//! Only the fields that routing and the local model need are typed; every
//! other field is kept, in order, in `extra` so the cloud receives the request
//! exactly as the app sent it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Largest `max_tokens` any request may ask for. Larger values are a client
/// mistake (no model here has a context that long), refused with a 400.
pub const MAX_TOKENS_LIMIT: u32 = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    /// `null` is read as absent, as OpenAI does (SDKs send it).
    #[serde(
        default,
        deserialize_with = "null_as_false",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Kept as raw JSON: only its presence matters to routing and to the
    /// local model (which cannot honour it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// Everything Tandem does not interpret, passed through untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn null_as_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StreamOptions {
    #[serde(default, deserialize_with = "null_as_false")]
    pub include_usage: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// `name`, `tool_calls`, `tool_call_id`, `refusal`, …: passed through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    /// The message's text: a plain string, or its text parts joined by
    /// newlines. Images and audio parts contribute nothing.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match &self.content {
            None => "".into(),
            Some(Content::Text(s)) => s.as_str().into(),
            Some(Content::Parts(parts)) => {
                let mut texts = parts.iter().filter_map(|p| p.text.as_deref());
                match (texts.next(), texts.next()) {
                    (None, _) => "".into(),
                    (Some(one), None) => one.into(),
                    (Some(a), Some(b)) => {
                        let mut s = format!("{a}\n{b}");
                        for t in texts {
                            s.push('\n');
                            s.push_str(t);
                        }
                        s.into()
                    }
                }
            }
        }
    }

    /// True when a part is not text (an image, audio, a file).
    pub fn has_non_text_parts(&self) -> bool {
        matches!(&self.content, Some(Content::Parts(parts)) if parts.iter().any(|p| p.kind != "text"))
    }

    pub fn text_message(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: Some(Content::Text(text.into())),
            extra: Map::new(),
        }
    }
}

impl ChatRequest {
    /// Parses and validates a request body. Every failure is a 400 naming
    /// the offending field (`param`), in the OpenAI error shape.
    pub fn from_slice(body: &[u8]) -> Result<Self, ApiError> {
        let de = &mut serde_json::Deserializer::from_slice(body);
        let req: ChatRequest = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let param = (path != ".").then_some(path);
            if inner.is_syntax() || inner.is_eof() {
                ApiError::invalid_request(format!("malformed JSON body: {inner}"), None)
            } else {
                ApiError::invalid_request(format!("invalid request: {inner}"), param)
            }
        })?;
        // Anything after the object (a second object, garbage) is malformed.
        de.end()
            .map_err(|e| ApiError::invalid_request(format!("malformed JSON body: {e}"), None))?;
        req.validate()?;
        Ok(req)
    }

    fn validate(&self) -> Result<(), ApiError> {
        if self.model.is_empty() {
            return Err(ApiError::invalid_request(
                "`model` must not be empty",
                Some("model".into()),
            ));
        }
        if self.messages.is_empty() {
            return Err(ApiError::invalid_request(
                "`messages` must contain at least one message",
                Some("messages".into()),
            ));
        }
        for (field, v) in [
            ("max_tokens", self.max_tokens),
            ("max_completion_tokens", self.max_completion_tokens),
        ] {
            match v {
                Some(0) => {
                    return Err(ApiError::invalid_request(
                        format!("`{field}` must be at least 1"),
                        Some(field.into()),
                    ));
                }
                Some(n) if n > MAX_TOKENS_LIMIT => {
                    return Err(ApiError::invalid_request(
                        format!("`{field}` must be at most {MAX_TOKENS_LIMIT}"),
                        Some(field.into()),
                    ));
                }
                _ => {}
            }
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ApiError::invalid_request(
                "`temperature` must be between 0 and 2",
                Some("temperature".into()),
            ));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(ApiError::invalid_request(
                "`top_p` must be in (0, 1]",
                Some("top_p".into()),
            ));
        }
        for (field, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if let Some(p) = v
                && !(-2.0..=2.0).contains(&p)
            {
                return Err(ApiError::invalid_request(
                    format!("`{field}` must be between -2 and 2"),
                    Some(field.into()),
                ));
            }
        }
        if let Some(n) = self.n
            && n == 0
        {
            return Err(ApiError::invalid_request("`n` must be at least 1", Some("n".into())));
        }
        if let Some(stop) = &self.stop {
            let stops = stop.to_vec();
            if stops.len() > 4 {
                return Err(ApiError::invalid_request(
                    "`stop` takes at most 4 sequences",
                    Some("stop".into()),
                ));
            }
            if stops.iter().any(|s| s.is_empty()) {
                return Err(ApiError::invalid_request(
                    "`stop` sequences must not be empty",
                    Some("stop".into()),
                ));
            }
        }
        Ok(())
    }

    /// The answer length the app asked for, whichever field it used.
    pub fn max_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().is_some_and(|o| o.include_usage)
    }

    pub fn has_tools(&self) -> bool {
        self.tools.as_ref().is_some_and(|t| !t.is_empty())
    }

    /// The text of every message, for scoring; no allocation per message when
    /// contents are plain strings.
    pub fn texts(&self) -> impl Iterator<Item = (Role, std::borrow::Cow<'_, str>)> {
        self.messages.iter().map(|m| (m.role, m.text()))
    }

    /// Every other string of the request that carries the user's data and
    /// leaves with it, for the privacy scan and redaction (both call this,
    /// so an index into it means the same in both): first the request's own
    /// fields outside the typed ones (`user`, `metadata`, a predicted
    /// output, vendor extensions), then per message, in order, its `name`,
    /// earlier tool calls and their arguments, a refusal, an image's URL, a
    /// file's name, any other field.
    ///
    /// Not included: the message contents ([`Self::texts`]); tool
    /// definitions and the response schema, which the developer writes;
    /// inline binary data (base64 `data:` URLs, raw base64), which is not
    /// text.
    pub fn side_texts(&self) -> Vec<&str> {
        self.side_texts_by_owner().into_iter().map(|(_, t)| t).collect()
    }

    /// [`Self::side_texts`], each with the message it belongs to (`None`:
    /// the request itself), in the same order.
    pub fn side_texts_by_owner(&self) -> Vec<(Option<usize>, &str)> {
        let mut out = Vec::new();
        for v in self.extra.values() {
            strings(v, None, &mut out);
        }
        for (i, m) in self.messages.iter().enumerate() {
            if let Some(Content::Parts(parts)) = &m.content {
                for v in parts.iter().flat_map(|p| p.extra.values()) {
                    strings(v, Some(i), &mut out);
                }
            }
            for v in m.extra.values() {
                strings(v, Some(i), &mut out);
            }
        }
        out
    }
}

/// The non-empty strings inside `v`, depth first (object keys are names,
/// not data), except inline binary data, each with `owner`.
fn strings<'a>(v: &'a Value, owner: Option<usize>, out: &mut Vec<(Option<usize>, &'a str)>) {
    match v {
        Value::String(s) if !s.is_empty() && !is_binary(s) => out.push((owner, s)),
        Value::Array(items) => items.iter().for_each(|x| strings(x, owner, out)),
        Value::Object(fields) => fields.values().for_each(|x| strings(x, owner, out)),
        _ => {}
    }
}

/// A base64 `data:` URL (an image, a file), or a long run of base64 (audio
/// data): bytes, not words.
fn is_binary(s: &str) -> bool {
    let head = &s.as_bytes()[..s.len().min(256)];
    let data_url = s.starts_with("data:") && head.windows(8).any(|w| w == b";base64,");
    let raw = s.len() >= 1024
        && head
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'));
    data_url || raw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let body = br#"{"model":"auto","messages":[{"role":"user","content":"hi","name":"bob"}],
            "tools":[{"type":"function","function":{"name":"f"}}],"user":"u1","vendor_x":{"a":[1,2]},"seed":7}"#;
        let req = ChatRequest::from_slice(body).unwrap();
        assert_eq!(req.seed, Some(7));
        assert!(req.has_tools());
        let back = serde_json::to_value(&req).unwrap();
        assert_eq!(back["user"], "u1");
        assert_eq!(back["vendor_x"]["a"][1], 2);
        assert_eq!(back["messages"][0]["name"], "bob");
        assert_eq!(back["seed"], 7);
    }

    #[test]
    fn side_texts_hold_what_leaves_outside_the_contents() {
        let body = br#"{"model":"auto","user":"u-42","metadata":{"note":"call me at 555"},"temperature":1,
            "tools":[{"type":"function","function":{"name":"f","description":"tool doc"}}],
            "messages":[
              {"role":"user","name":"alice_smith","content":[{"type":"text","text":"hi"},
                {"type":"image_url","image_url":{"url":"https://x.test/a.png"}},
                {"type":"refusal","refusal":"no"}]},
              {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
                "function":{"name":"pay","arguments":"{\"card\":\"4111\"}"}}]},
              {"role":"user","content":"x","extra":{"blob":"data:image/png;base64,AAAA"}}]}"#;
        let req = ChatRequest::from_slice(body).unwrap();
        let side = req.side_texts();
        for want in [
            "alice_smith",
            "no",
            "c1",
            "pay",
            "{\"card\":\"4111\"}",
            "u-42",
            "call me at 555",
            "https://x.test/a.png",
        ] {
            assert!(side.contains(&want), "{want:?} missing from {side:?}");
        }
        // Contents, tool definitions and inline data are not side texts.
        for not in ["hi", "x", "tool doc", "data:image/png;base64,AAAA"] {
            assert!(!side.contains(&not), "{not:?} in {side:?}");
        }
        // The request's own fields first, then each message's, in order.
        let owners: Vec<Option<usize>> = req.side_texts_by_owner().iter().map(|(o, _)| *o).collect();
        assert_eq!(owners.first(), Some(&None));
        assert!(owners.windows(2).all(|w| w[0] <= w[1]), "{owners:?}");
        assert_eq!(owners.last(), Some(&Some(1)));
        // Text that merely starts like a data URL is text; long raw base64 is not.
        let mut req = req;
        req.extra
            .insert("note".into(), Value::String("data: SSN 078-05-1120".into()));
        req.extra.insert("audio".into(), Value::String("QUJD".repeat(300)));
        let side = req.side_texts();
        assert!(side.contains(&"data: SSN 078-05-1120"));
        assert!(!side.iter().any(|t| t.starts_with("QUJD")));
        let plain = ChatRequest::from_slice(br#"{"model":"a","messages":[{"role":"user","content":"x"}]}"#).unwrap();
        assert!(plain.side_texts().is_empty());
    }

    #[test]
    fn null_stream_flags_read_as_absent() {
        let body = br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":null,
            "stream_options":{"include_usage":null},"max_tokens":null}"#;
        let req = ChatRequest::from_slice(body).unwrap();
        assert!(!req.stream && !req.include_usage());
        let bad = br#"{"model":"a","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#;
        assert_eq!(
            ChatRequest::from_slice(bad).unwrap_err().param.as_deref(),
            Some("stream")
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (
                br#"{"model":"a","messages":[{"role":"wizard","content":"x"}]}"#,
                Some("messages[0].role"),
            ),
            (br#"{"model":"a","messages":"hi"}"#, Some("messages")),
            (br#"{"model":5,"messages":[]}"#, Some("model")),
            (br#"{"model":"a","messages":[]}"#, Some("messages")),
            (
                br#"{"model":"a","messages":[{"role":"user","content":"x"}],"max_tokens":-1}"#,
                Some("max_tokens"),
            ),
            (
                br#"{"model":"a","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                Some("max_tokens"),
            ),
            (br#"{"model":"a","#, None),
            (br#"{"model":"a","messages":[{"role":"user","content":"x"}]} {}"#, None),
        ];
        for (body, param) in cases {
            let err = ChatRequest::from_slice(body).unwrap_err();
            assert_eq!(err.status, 400, "{}", String::from_utf8_lossy(body));
            assert_eq!(err.param.as_deref(), *param, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn text_of_parts_joins_text_only() {
        let body = br#"{"model":"a","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]}]}"#;
        let req = ChatRequest::from_slice(body).unwrap();
        assert_eq!(req.messages[0].text(), "a\nb");
        assert!(req.messages[0].has_non_text_parts());
    }
}
