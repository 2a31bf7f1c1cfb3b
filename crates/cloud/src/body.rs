//! The request body sent upstream: the app's request serialised as it came,
//! with `model` replaced by the endpoint's model, the stream flags set, and
//! the partial answer appended when continuing another backend's answer.

use api::request::StreamOptions;
use api::{ChatRequest, Generate, Message, Role};
use bytes::Bytes;

/// The app's request made ready for the cloud, once per request; the model
/// is set per endpoint by [`Prepared::body_for`].
#[derive(Debug)]
pub(crate) struct Prepared {
    req: ChatRequest,
}

impl Prepared {
    pub(crate) fn new(generate: Generate, stream: bool) -> Self {
        let Generate {
            mut request,
            continue_from,
            want_token_stats: _,
        } = generate;
        request.stream = stream;
        if stream {
            // Usage is always asked for; the gateway decides whether the app
            // sees it. Other stream options the app set pass through.
            let mut opts = request.stream_options.take().unwrap_or(StreamOptions {
                include_usage: true,
                extra: Default::default(),
            });
            opts.include_usage = true;
            request.stream_options = Some(opts);
        } else {
            // OpenAI refuses `stream_options` without `stream: true`.
            request.stream_options = None;
        }
        // Nothing to continue from an empty partial: an empty assistant turn
        // would only confuse chat templates.
        if let Some(partial) = continue_from.filter(|p| !p.is_empty()) {
            request.messages.push(Message::text_message(Role::Assistant, partial));
        }
        Prepared { req: request }
    }

    pub(crate) fn has_tools(&self) -> bool {
        self.req.has_tools()
    }

    pub(crate) fn body_for(&mut self, model: &str) -> Result<Bytes, serde_json::Error> {
        model.clone_into(&mut self.req.model);
        serde_json::to_vec(&self.req).map(Bytes::from)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::{Value, json};

    fn generate(body: Value) -> Generate {
        Generate::new(ChatRequest::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap())
    }

    #[test]
    fn stream_body_keeps_unknown_fields_and_replaces_model() {
        let g = generate(json!({
            "model": "auto", "messages": [{"role": "user", "content": "hi", "name": "u"}],
            "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "auto",
            "stream_options": {"include_usage": false, "continuous_usage_stats": true},
            "logprobs": true, "top_logprobs": 2, "seed": 3, "user": "x", "vendor_ext": {"k": [1]}
        }));
        let mut p = Prepared::new(g, true);
        let v: Value = serde_json::from_slice(&p.body_for("up-70b").unwrap()).unwrap();
        assert_eq!(v["model"], "up-70b");
        assert_eq!(v["stream"], true);
        assert_eq!(
            v["stream_options"],
            json!({"include_usage": true, "continuous_usage_stats": true})
        );
        assert_eq!(v["tool_choice"], "auto");
        assert_eq!(v["vendor_ext"], json!({"k": [1]}));
        assert_eq!(v["messages"][0]["name"], "u");
        assert_eq!(
            (v["logprobs"].clone(), v["top_logprobs"].clone(), v["seed"].clone()),
            (json!(true), json!(2), json!(3))
        );
        let v2: Value = serde_json::from_slice(&p.body_for("other").unwrap()).unwrap();
        assert_eq!(v2["model"], "other");
    }

    #[test]
    fn non_stream_body_has_no_stream_options() {
        let g = generate(json!({"model": "a", "messages": [{"role": "user", "content": "hi"}],
            "stream": true, "stream_options": {"include_usage": true}}));
        let v: Value = serde_json::from_slice(&Prepared::new(g, false).body_for("m").unwrap()).unwrap();
        assert!(v.get("stream").is_none_or(|s| s == false));
        assert!(v.get("stream_options").is_none());
    }

    #[test]
    fn continue_from_appends_the_partial_assistant_turn() {
        let mut g = generate(json!({"model": "a", "messages": [{"role": "user", "content": "count"}]}));
        g.continue_from = Some("1, 2,".into());
        let v: Value = serde_json::from_slice(&Prepared::new(g, true).body_for("m").unwrap()).unwrap();
        assert_eq!(v["messages"].as_array().unwrap().len(), 2);
        assert_eq!(v["messages"][1], json!({"role": "assistant", "content": "1, 2,"}));
    }
}
