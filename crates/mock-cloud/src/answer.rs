//! What the mock answers: a deterministic function of the request.
//!
//! - **Text.** `chunks` words (default [`DEFAULT_CHUNKS`]), one per chunk,
//!   separated by single spaces (every chunk but the first starts with the
//!   space). Word `i` is picked from a fixed vocabulary by a hash of the last
//!   `user` message's text and `i`, so the same question always gets the
//!   same answer, and [`expected_text`] computes it.
//! - **Continuation.** When the last message is `assistant` (text `P`), let
//!   `A` be the answer the conversation without that message would get. If
//!   `P` is `A`'s first `k` chunks (exactly, or but for trailing whitespace),
//!   the answer is `A`'s remaining chunks, so `P` + answer = `A`: a client that
//!   resumes a cut stream gets the text it would have had. Otherwise the answer
//!   is `chunks` words hashed from the last user text and `P`, each starting
//!   with a space unless `P` ends with whitespace.
//! - **Tool call.** When the request has a non-empty `tools`, `tool_choice` is
//!   not `"none"` and the last message is not a `tool` result, the answer is
//!   one call of the function named by `tool_choice` (else the first tool,
//!   else `mock_tool`), id `call_<16 hex>`, arguments
//!   `{"query":"<three words>","mock":true}` streamed in max(3, chunks) pieces.
//! - **Echo** (`x-mock-echo: 1`). The last user message's text, in chunks of
//!   three characters.
//!
//! `max_tokens`/`max_completion_tokens` caps the chunks sent (one chunk is
//! one token) and the finish reason becomes `length`. Usage: `prompt_tokens`
//! counts the words of every message's text, each CJK character as one word
//! ([`count_tokens`]); `completion_tokens` is the number of chunks sent.

use std::borrow::Cow;

use serde_json::Value;

use crate::error::HttpError;

/// Chunks in an answer when the fault does not say `chunks=N`.
pub const DEFAULT_CHUNKS: u32 = 12;

/// Pieces a tool call's arguments are streamed in, at least.
const MIN_TOOL_PIECES: usize = 3;

const VOCAB: [&str; 32] = [
    "alpha", "bravo", "cloud", "delta", "echo", "field", "green", "harbor", "island", "jungle", "kernel", "lemon",
    "meadow", "night", "orbit", "pepper", "quartz", "river", "signal", "tandem", "umber", "velvet", "window", "xenon",
    "yellow", "zephyr", "amber", "basalt", "cedar", "dune", "ember", "fjord",
];

/// The parts of a chat request the mock needs.
#[derive(Debug)]
pub(crate) struct Conversation<'a> {
    pub model: &'a str,
    pub stream: bool,
    pub include_usage: bool,
    pub max_tokens: Option<u64>,
    pub prompt_tokens: u64,
    /// Text of the last `user` message ("" when there is none).
    pub last_user: Cow<'a, str>,
    /// Text of a trailing `assistant` message: the request is a continuation.
    pub prefix: Option<Cow<'a, str>>,
    /// Name of the function to call, when the answer is a tool call.
    pub tool: Option<&'a str>,
}

/// Reads and checks a request body the way an OpenAI endpoint would.
pub(crate) fn read_request(body: &Value) -> Result<Conversation<'_>, HttpError> {
    let Some(obj) = body.as_object() else {
        return Err(HttpError::bad_request("the request body must be a JSON object", None));
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.as_str(),
        _ => {
            return Err(HttpError::bad_request(
                "`model` must be a non-empty string",
                Some("model"),
            ));
        }
    };
    let messages = match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        _ => {
            return Err(HttpError::bad_request(
                "`messages` must be a non-empty array",
                Some("messages"),
            ));
        }
    };
    let mut prompt_tokens = 0u64;
    let mut last_user = Cow::Borrowed("");
    let mut last_role = "";
    let mut last_text = Cow::Borrowed("");
    for (i, m) in messages.iter().enumerate() {
        let Some(role) = m.get("role").and_then(Value::as_str) else {
            return Err(HttpError::bad_request(
                format!("`messages[{i}].role` must be a string"),
                Some(&format!("messages[{i}].role")),
            ));
        };
        let text = message_text(m.get("content"));
        prompt_tokens += u64::from(count_tokens(&text));
        if role == "user" {
            last_user = text.clone();
        }
        last_role = role;
        last_text = text;
    }
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(HttpError::bad_request("`stream` must be a boolean", Some("stream"))),
    };
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut max_tokens = None;
    for field in ["max_tokens", "max_completion_tokens"] {
        match obj.get(field) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => max_tokens = Some(n),
                _ => {
                    return Err(HttpError::bad_request(
                        format!("`{field}` must be a positive integer"),
                        Some(field),
                    ));
                }
            },
        }
    }
    Ok(Conversation {
        model,
        stream,
        include_usage,
        max_tokens,
        prompt_tokens,
        last_user,
        prefix: (last_role == "assistant").then_some(last_text),
        tool: tool_to_call(obj, last_role),
    })
}

fn tool_to_call<'a>(obj: &'a serde_json::Map<String, Value>, last_role: &str) -> Option<&'a str> {
    let tools = obj.get("tools")?.as_array()?;
    if tools.is_empty() || last_role == "tool" {
        return None;
    }
    let choice = obj.get("tool_choice");
    if choice.and_then(Value::as_str) == Some("none") {
        return None;
    }
    let name_of = |v: &'a Value| v.get("function")?.get("name")?.as_str();
    Some(
        choice
            .and_then(name_of)
            .or_else(|| tools.first().and_then(name_of))
            .unwrap_or("mock_tool"),
    )
}

/// A message's text: a string, or its text parts joined by newlines.
fn message_text(content: Option<&Value>) -> Cow<'_, str> {
    match content {
        Some(Value::String(s)) => Cow::Borrowed(s),
        Some(Value::Array(parts)) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            match texts.as_slice() {
                [one] => Cow::Borrowed(one),
                _ => Cow::Owned(texts.join("\n")),
            }
        }
        _ => Cow::Borrowed(""),
    }
}

/// Words in `text`: runs of non-whitespace, except that every CJK character
/// (Han, kana, Hangul, CJK punctuation and full-width forms) counts as one
/// word on its own.
pub fn count_tokens(text: &str) -> u32 {
    let mut n = 0u32;
    let mut in_word = false;
    for c in text.chars() {
        if c.is_whitespace() {
            in_word = false;
        } else if is_cjk(c) {
            n = n.saturating_add(1);
            in_word = false;
        } else if !in_word {
            n = n.saturating_add(1);
            in_word = true;
        }
    }
    n
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3000..=0x30FF     // CJK punctuation, hiragana, katakana
        | 0x3400..=0x4DBF   // Han extension A
        | 0x4E00..=0x9FFF   // Han
        | 0xAC00..=0xD7AF   // Hangul syllables
        | 0xF900..=0xFAFF   // Han compatibility
        | 0xFF00..=0xFFEF   // full-width forms
        | 0x20000..=0x3FFFF // Han extensions B and later
    )
}

/// One answer, as the pieces it is sent in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// All pieces back to back (for a tool call: the arguments).
    text: String,
    /// `bounds[i]..bounds[i + 1]` is piece `i`; one entry more than pieces.
    bounds: Vec<usize>,
    pub tool_call: Option<ToolCall>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolCall {
    pub id: String,
    pub name: String,
}

impl Answer {
    fn new() -> Self {
        Answer {
            text: String::new(),
            bounds: vec![0],
            tool_call: None,
        }
    }

    pub fn len(&self) -> usize {
        self.bounds.len() - 1
    }

    pub fn piece(&self, i: usize) -> &str {
        &self.text[self.bounds[i]..self.bounds[i + 1]]
    }

    /// The first `n` pieces, joined.
    pub fn prefix(&self, n: usize) -> &str {
        &self.text[..self.bounds[n.min(self.len())]]
    }

    fn push(&mut self, piece: &str) {
        self.text.push_str(piece);
        self.bounds.push(self.text.len());
    }

    /// Pieces `from..` as an answer of their own.
    fn suffix(&self, from: usize) -> Answer {
        let start = self.bounds[from];
        Answer {
            text: self.text[start..].to_owned(),
            bounds: self.bounds[from..].iter().map(|b| b - start).collect(),
            tool_call: None,
        }
    }

    /// Splits `text` into `pieces` runs of about equal length, on character
    /// boundaries (fewer when the text is shorter).
    fn split_even(text: &str, pieces: usize) -> Answer {
        let mut a = Answer::new();
        let chars = text.chars().count();
        let pieces = pieces.clamp(1, chars.max(1));
        let mut taken = 0;
        let mut rest = text;
        for i in 0..pieces {
            let want = (chars * (i + 1)) / pieces - taken;
            let end = rest.char_indices().nth(want).map_or(rest.len(), |(b, _)| b);
            a.push(&rest[..end]);
            rest = &rest[end..];
            taken += want;
        }
        a
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of a 64-bit value.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a: stable across processes and versions, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

fn words(seed: u64, n: u32, mut space: bool) -> Answer {
    let mut a = Answer::new();
    let mut piece = String::new();
    for i in 0..u64::from(n) {
        piece.clear();
        if space {
            piece.push(' ');
        }
        piece.push_str(VOCAB[(mix(seed ^ mix(i)) % VOCAB.len() as u64) as usize]);
        a.push(&piece);
        space = true;
    }
    a
}

/// The whole answer to `conv` (before `max_tokens` is applied).
pub(crate) fn answer(conv: &Conversation<'_>, chunks: u32, echo: bool) -> Answer {
    let seed = fnv1a(conv.last_user.as_bytes());
    if echo {
        let mut a = Answer::new();
        let mut rest: &str = &conv.last_user;
        while !rest.is_empty() {
            let end = rest.char_indices().nth(3).map_or(rest.len(), |(b, _)| b);
            a.push(&rest[..end]);
            rest = &rest[end..];
        }
        return a;
    }
    if let Some(name) = conv.tool {
        let query = words(seed, 3, false).text;
        let args = serde_json::json!({"query": query, "mock": true}).to_string();
        let mut a = Answer::split_even(&args, (chunks as usize).max(MIN_TOOL_PIECES));
        a.tool_call = Some(ToolCall {
            id: format!("call_{:016x}", mix(seed)),
            name: name.to_owned(),
        });
        return a;
    }
    let full = words(seed, chunks, false);
    let Some(prefix) = &conv.prefix else {
        return full;
    };
    let known = (0..=full.len()).find(|&k| {
        let p = full.prefix(k);
        p == prefix || (p.len() < prefix.len() && p == prefix.trim_end())
    });
    match known {
        Some(k) => full.suffix(k),
        None => words(
            seed ^ mix(fnv1a(prefix.as_bytes())),
            chunks,
            !prefix.is_empty() && !prefix.ends_with(char::is_whitespace),
        ),
    }
}

/// The text a request gets with `chunks=N` and no `max_tokens` (for a tool
/// call: the arguments), or `None` when the body is not a valid chat request.
/// For echo mode the answer is simply the last user message's text.
pub fn expected_text(body: &Value, chunks: u32) -> Option<String> {
    let conv = read_request(body).ok()?;
    Some(answer(&conv, chunks, false).text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    fn pieces(a: &Answer) -> Vec<&str> {
        (0..a.len()).map(|i| a.piece(i)).collect()
    }

    fn conv(body: &Value) -> Conversation<'_> {
        read_request(body).unwrap()
    }

    #[test]
    fn same_question_same_answer_different_question_different_answer() {
        let a =
            json!({"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello"}]});
        let b = json!({"model":"x","messages":[{"role":"user","content":"hello"}]});
        let c = json!({"model":"m","messages":[{"role":"user","content":"goodbye"}]});
        let ta = answer(&conv(&a), 12, false);
        assert_eq!(ta.len(), 12);
        assert_eq!(ta, answer(&conv(&b), 12, false));
        assert_ne!(ta, answer(&conv(&c), 12, false));
        let p = pieces(&ta);
        assert!(!p[0].starts_with(' ') && p[1..].iter().all(|w| w.starts_with(' ') && w.len() > 1));
        assert_eq!(expected_text(&a, 12).unwrap(), ta.text);
    }

    #[test]
    fn continuation_of_a_known_prefix_completes_the_answer() {
        let q = json!({"model":"m","messages":[{"role":"user","content":"tell me"}]});
        let full = expected_text(&q, 8).unwrap();
        let whole = answer(&conv(&q), 8, false);
        for k in 0..=8 {
            let prefix = whole.prefix(k).to_owned();
            let body = json!({"model":"m","messages":[
                {"role":"user","content":"tell me"},{"role":"assistant","content":prefix}]});
            let rest = answer(&conv(&body), 8, false);
            assert_eq!(rest.len(), 8 - k);
            assert_eq!(format!("{prefix}{}", rest.text), full);
        }
        // A prefix the mock did not write gets fresh words, joined by a space.
        let body = json!({"model":"m","messages":[
            {"role":"user","content":"tell me"},{"role":"assistant","content":"Once upon"}]});
        let other = answer(&conv(&body), 4, false);
        assert_eq!(other.len(), 4);
        assert!(other.piece(0).starts_with(' '));
        assert_eq!(other, answer(&conv(&body), 4, false));
    }

    #[test]
    fn echo_splits_on_characters() {
        let body = json!({"model":"m","messages":[{"role":"user","content":"héllo 你好吗朋友"}]});
        assert_eq!(
            pieces(&answer(&conv(&body), 12, true)),
            ["hél", "lo ", "你好吗", "朋友"]
        );
    }

    #[test]
    fn tool_call_arguments_in_pieces() {
        let body = json!({"model":"m","messages":[{"role":"user","content":"weather?"}],
            "tools":[{"type":"function","function":{"name":"get_weather","parameters":{}}}]});
        for chunks in [0, 1, 3, 12, 1000] {
            let a = answer(&conv(&body), chunks, false);
            assert!(a.len() >= 3);
            let call = a.tool_call.clone().unwrap();
            assert_eq!(call.name, "get_weather");
            let args: Value = serde_json::from_str(&a.text).unwrap();
            assert_eq!(args["mock"], true);
        }
        let mut after_tool = body.clone();
        after_tool["messages"]
            .as_array_mut()
            .unwrap()
            .push(json!({"role":"tool","tool_call_id":"x","content":"sunny"}));
        assert!(answer(&conv(&after_tool), 4, false).tool_call.is_none());
        let mut none = body.clone();
        none["tool_choice"] = json!("none");
        assert!(answer(&conv(&none), 4, false).tool_call.is_none());
    }

    #[test]
    fn token_counts() {
        for (text, n) in [
            ("", 0),
            ("hello world", 2),
            ("  spaced\tout\nwords  ", 3),
            ("你好世界", 4),
            ("say 你好 now", 4),
            ("Halo, apa kabar?", 3),
        ] {
            assert_eq!(count_tokens(text), n, "{text:?}");
        }
        let body = json!({"model":"m","messages":[{"role":"user","content":[
            {"type":"text","text":"one two"},{"type":"image_url","image_url":{"url":"u"}},{"type":"text","text":"three"}]}]});
        assert_eq!(conv(&body).prompt_tokens, 3);
    }

    #[test]
    fn bad_requests_name_the_field() {
        for (body, param) in [
            (json!([1]), None),
            (json!({"messages":[{"role":"user","content":"x"}]}), Some("model")),
            (json!({"model":"m","messages":[]}), Some("messages")),
            (
                json!({"model":"m","messages":[{"content":"x"}]}),
                Some("messages[0].role"),
            ),
            (
                json!({"model":"m","messages":[{"role":"user"}],"max_tokens":0}),
                Some("max_tokens"),
            ),
            (
                json!({"model":"m","messages":[{"role":"user"}],"stream":"yes"}),
                Some("stream"),
            ),
        ] {
            let err = read_request(&body).unwrap_err();
            assert_eq!(err.status, 400);
            assert_eq!(err.param.as_deref(), param, "{body}");
        }
    }
}
