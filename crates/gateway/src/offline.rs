//! The commands that route or score without running the daemon:
//! `tandem route`, `tandem score`, `tandem policy check`. No model is loaded
//! and no network is used; backends are assumed up.

use std::path::Path;

use api::{ChatRequest, Message, Role};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{Config, EMBEDDED_POLICY};
use crate::routing::Routing;

pub struct Offline {
    routing: Routing,
}

fn targets(cfg: &Config) -> policy::Targets {
    Routing::targets(
        cfg.local.iter().map(|t| t.name.as_str()),
        cfg.cloud.iter().map(|t| t.name.as_str()),
    )
}

impl Offline {
    /// The configured policy file, as the daemon reads it: the embedded
    /// policy when the file does not exist (said on stderr), an error when
    /// it cannot be read or is refused.
    pub fn new(cfg: &Config) -> anyhow::Result<Self> {
        let file = &cfg.policy_file;
        let routing = match std::fs::read_to_string(file) {
            Ok(text) => Routing::new(&text, file, false, targets(cfg))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!(
                    "tandem: policy file {} not found; using the embedded policy",
                    file.display()
                );
                Routing::new(
                    EMBEDDED_POLICY,
                    Path::new("<embedded config/policy.toml>"),
                    false,
                    targets(cfg),
                )?
            }
            Err(e) => anyhow::bail!("policy file {}: cannot read: {e}", file.display()),
        };
        Ok(Offline { routing })
    }

    pub fn route_text(&self, text: &str) -> Value {
        let req = chat(vec![Message::text_message(Role::User, text)]);
        self.routing.explain(&req, &HeaderMap::new(), None)
    }

    /// One `tandem score` line: `{"id","prompt"}` or `{"id","messages"}` in,
    /// `{"id","complexity","privacy","entities","route","rule"}` out, with
    /// entity offsets in characters. A line that cannot be scored gives
    /// `{"id","error"}` instead (the id when the line has one), so one bad
    /// line costs only its own answer.
    pub fn score_line(&self, line: &str) -> Result<Value, Value> {
        // Other fields (labels, sets …) may ride along and are ignored.
        #[derive(Deserialize)]
        struct In {
            prompt: Option<String>,
            messages: Option<Vec<Message>>,
        }
        let raw: Value = serde_json::from_str(line).map_err(|e| score_error(Value::Null, format!("not JSON: {e}")))?;
        let id = raw.get("id").cloned().unwrap_or(Value::Null);
        let input: In = serde_json::from_value(raw).map_err(|e| {
            score_error(
                id.clone(),
                format!("expected {{\"id\", \"prompt\" or \"messages\"}}: {e}"),
            )
        })?;
        let messages = match (input.prompt, input.messages) {
            (Some(p), None) => vec![Message::text_message(Role::User, p)],
            (None, Some(m)) if !m.is_empty() => m,
            _ => {
                return Err(score_error(
                    id,
                    "give exactly one of `prompt` or a non-empty `messages`",
                ));
            }
        };
        let req = chat(messages);
        let scores = self.routing.score(&req);
        let explained = self.routing.explain(&req, &HeaderMap::new(), None);
        let entities = crate::routing::entities_json(&scores, req.messages.len());
        Ok(json!({
            "id": id,
            "complexity": scores.complexity,
            "privacy": scores.privacy,
            "entities": entities,
            "route": explained["route"],
            "rule": explained["rule"],
        }))
    }
}

/// The `tandem score` line for an input that could not be scored.
pub fn score_error(id: Value, error: impl Into<String>) -> Value {
    json!({"id": id, "error": error.into()})
}

fn chat(messages: Vec<Message>) -> ChatRequest {
    ChatRequest {
        model: "auto".into(),
        messages,
        stream: false,
        stream_options: None,
        max_tokens: None,
        max_completion_tokens: None,
        temperature: None,
        top_p: None,
        seed: None,
        stop: None,
        presence_penalty: None,
        frequency_penalty: None,
        n: None,
        logit_bias: None,
        tools: None,
        response_format: None,
        extra: Default::default(),
    }
}

/// Validates a policy file against the configured tiers; a one-line summary
/// on success, the file:line:column error otherwise.
pub fn check_policy(cfg: &Config, file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
    let p = policy::Policy::parse(&text, file, &targets(cfg)).map_err(|e| e.to_string())?;
    Ok(format!("{} rules", p.rule_names().count()))
}
