//! One SSE event of an OpenAI stream turned into [`Event`]s.
//!
//! Lenient about what does not matter (unknown fields, `null`s, vendor
//! events without choices) and strict about what does: data that is not
//! JSON, or fields of the wrong type, are `Malformed`; an `error` object is
//! an in-band error. Only choice 0 is read: the gateway renders one answer.

use api::sse::SseEvent;
use api::{Event, FinishReason, Usage};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ChunkError {
    /// Not JSON, or not the shape of a chunk. The string says what, never
    /// the chunk's text.
    Malformed(String),
    /// The upstream reported an error inside the stream.
    InBand(Value),
    /// The upstream ended the answer abnormally (`finish_reason: "abort"`).
    Aborted,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Option<UsageWire>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    logprobs: Option<Value>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    /// vLLM, SGLang, DeepSeek.
    #[serde(default)]
    reasoning_content: Option<String>,
    /// OpenRouter, Ollama.
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallWire>>,
}

#[derive(Deserialize)]
struct ToolCallWire {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionWire>,
}

#[derive(Deserialize)]
struct FunctionWire {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct UsageWire {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
    #[serde(default)]
    total_tokens: Option<u32>,
}

/// Parses one SSE event, appending its events to `out`. Returns true on
/// `data: [DONE]`.
pub(crate) fn parse(ev: &SseEvent, out: &mut Vec<Event>) -> Result<bool, ChunkError> {
    let data = ev.data.trim();
    if data == "[DONE]" {
        return Ok(true);
    }
    if ev.event.as_deref() == Some("error") {
        let body = serde_json::from_str::<Value>(data).unwrap_or(Value::Null);
        return Err(ChunkError::InBand(body));
    }
    let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
        // The position and category only: serde's message can quote input.
        ChunkError::Malformed(format!(
            "chunk is not valid ({:?} at column {})",
            e.classify(),
            e.column()
        ))
    })?;
    if let Some(err) = chunk.error
        && !err.is_null()
    {
        return Err(ChunkError::InBand(serde_json::json!({ "error": err })));
    }
    for choice in chunk.choices.unwrap_or_default().into_iter().filter(|c| c.index == 0) {
        if let Some(delta) = choice.delta {
            for (key, text) in [
                ("reasoning_content", delta.reasoning_content),
                ("reasoning", delta.reasoning),
                ("refusal", delta.refusal),
            ] {
                if let Some(text) = text.filter(|t| !t.is_empty()) {
                    out.push(Event::Aside { key: key.into(), text });
                }
            }
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                out.push(Event::text(text));
            }
            for call in delta.tool_calls.unwrap_or_default() {
                let (name, arguments) = match call.function {
                    Some(f) => (f.name, f.arguments.unwrap_or_default()),
                    None => (None, String::new()),
                };
                out.push(Event::ToolCall {
                    index: call.index,
                    id: call.id,
                    name,
                    arguments,
                });
            }
        }
        if let Some(lp) = choice.logprobs.filter(|v| !v.is_null()) {
            out.push(Event::Logprobs(lp));
        }
        if let Some(reason) = choice.finish_reason {
            out.push(Event::Finish(finish_reason(&reason)?));
        }
    }
    if let Some(u) = chunk.usage {
        let mut usage = Usage::new(u.prompt_tokens, u.completion_tokens);
        if let Some(total) = u.total_tokens {
            usage.total_tokens = total;
        }
        out.push(Event::Usage(usage));
    }
    Ok(false)
}

/// Servers spell the end of an answer in their own words (TGI:
/// `eos_token`, `stop_sequence`); anything unknown ended normally, except
/// vLLM's `abort`, which means the answer was cut.
fn finish_reason(s: &str) -> Result<FinishReason, ChunkError> {
    if let Some(r) = FinishReason::parse(s) {
        return Ok(r);
    }
    match s {
        "abort" | "error" => Err(ChunkError::Aborted),
        _ => Ok(FinishReason::Stop),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn run(data: &str) -> Result<(Vec<Event>, bool), ChunkError> {
        let mut out = Vec::new();
        let done = parse(
            &SseEvent {
                event: None,
                data: data.into(),
            },
            &mut out,
        )?;
        Ok((out, done))
    }

    #[test]
    fn content_tool_calls_logprobs_finish_usage() {
        let (ev, done) = run(
            r#"{"id":"x","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},
            "logprobs":{"content":[{"token":"Hi","logprob":-0.1}]},"finish_reason":null}],"usage":null}"#,
        )
        .unwrap();
        assert!(!done);
        assert_eq!(
            ev,
            [
                Event::text("Hi"),
                Event::Logprobs(json!({"content":[{"token":"Hi","logprob":-0.1}]}))
            ]
        );
        let (ev, _) = run(
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"c1","type":"function",
            "function":{"name":"f","arguments":"{\"a\""}}]},"finish_reason":"tool_calls"}]}"#,
        )
        .unwrap();
        assert_eq!(
            ev,
            [
                Event::ToolCall {
                    index: 1,
                    id: Some("c1".into()),
                    name: Some("f".into()),
                    arguments: "{\"a\"".into()
                },
                Event::Finish(FinishReason::ToolCalls)
            ]
        );
        let (ev, _) =
            run(r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#).unwrap();
        assert_eq!(ev, [Event::Usage(Usage::new(3, 4))]);
        assert_eq!(run(" [DONE] ").unwrap(), (vec![], true));
    }

    #[test]
    fn refusals_and_reasoning_are_text_too() {
        let aside = |key: &str, text: &str| Event::Aside {
            key: key.into(),
            text: text.into(),
        };
        let (ev, _) = run(r#"{"choices":[{"index":0,"delta":{"refusal":"I can't help"}}]}"#).unwrap();
        assert_eq!(ev, [aside("refusal", "I can't help")]);
        assert!(ev[0].is_content());
        let (ev, _) =
            run(r#"{"choices":[{"index":0,"delta":{"reasoning_content":"Think.","content":null}}]}"#).unwrap();
        assert_eq!(ev, [aside("reasoning_content", "Think.")]);
        let (ev, _) = run(r#"{"choices":[{"index":0,"delta":{"reasoning":"Hm","content":"A"}}]}"#).unwrap();
        assert_eq!(ev, [aside("reasoning", "Hm"), Event::text("A")]);
        let (ev, _) = run(r#"{"choices":[{"index":0,"delta":{"refusal":null,"reasoning_content":""}}]}"#).unwrap();
        assert!(ev.is_empty());
    }

    #[test]
    fn role_only_and_empty_chunks_yield_nothing() {
        for data in [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"index":0,"delta":{}}]}"#,
            r#"{"choices":null}"#,
            r#"{"object":"vendor.keepalive"}"#,
            r#"{"choices":[{"index":1,"delta":{"content":"other choice"}}]}"#,
        ] {
            assert_eq!(run(data).unwrap(), (vec![], false), "{data}");
        }
    }

    #[test]
    fn errors() {
        assert!(matches!(run("{not json"), Err(ChunkError::Malformed(_))));
        assert!(matches!(
            run(r#"{"choices":[{"delta":{"content":5}}]}"#),
            Err(ChunkError::Malformed(_))
        ));
        assert_eq!(
            run(r#"{"error":{"message":"overloaded","code":503}}"#),
            Err(ChunkError::InBand(json!({"error":{"message":"overloaded","code":503}})))
        );
        assert_eq!(
            run(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"abort"}]}"#),
            Err(ChunkError::Aborted)
        );
        let mut out = Vec::new();
        let ev = SseEvent {
            event: Some("error".into()),
            data: r#"{"message":"x"}"#.into(),
        };
        assert_eq!(parse(&ev, &mut out), Err(ChunkError::InBand(json!({"message":"x"}))));
    }
}
