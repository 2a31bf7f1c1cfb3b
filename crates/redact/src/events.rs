//! Restoration at the level the gateway works at: the backend's event
//! stream ([`EventRestorer`]) and a cloud's non-stream OpenAI JSON
//! ([`restore_completion`]).

use api::Event;
use serde_json::Value;

use crate::map::PlaceholderMap;
use crate::restore::{JsonRestorer, Restorer, restore_all, restore_json_all};

/// Restores placeholders in a stream of [`Event`]s: answer text through a
/// [`Restorer`], each tool call's arguments through its own [`JsonRestorer`].
///
/// Order is kept: held text is released before a tool call, a finish or
/// usage event; held arguments before text, another call, a finish or usage.
#[derive(Debug, Clone)]
pub struct EventRestorer {
    map: PlaceholderMap,
    text: Restorer,
    /// The tool call whose arguments are streaming, with its restorer.
    call: Option<(u32, JsonRestorer)>,
    /// A restorer per `Aside` key (refusal, reasoning), each its own text.
    asides: Vec<(String, Restorer)>,
}

impl EventRestorer {
    pub fn new(map: &PlaceholderMap) -> Self {
        EventRestorer {
            map: map.clone(),
            text: Restorer::new(map),
            call: None,
            asides: Vec::new(),
        }
    }

    /// The events to send now for `event` (none, when all its text is held).
    pub fn push(&mut self, event: Event) -> Vec<Event> {
        let mut out = Vec::new();
        match event {
            Event::Text { text, stats } => {
                self.flush_call(&mut out);
                let text = self.text.push(&text);
                if !text.is_empty() || stats.is_some() {
                    out.push(Event::Text { text, stats });
                }
            }
            Event::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                self.flush_text(&mut out);
                if self.call.as_ref().is_some_and(|(i, _)| *i != index) {
                    self.flush_call(&mut out);
                }
                let (_, r) = self.call.get_or_insert_with(|| (index, JsonRestorer::new(&self.map)));
                let arguments = r.push(&arguments);
                if id.is_some() || name.is_some() || !arguments.is_empty() {
                    out.push(Event::ToolCall {
                        index,
                        id,
                        name,
                        arguments,
                    });
                }
            }
            Event::Logprobs(v) => out.push(Event::Logprobs(v)),
            Event::Aside { key, text } => {
                let i = match self.asides.iter().position(|(k, _)| *k == key) {
                    Some(i) => i,
                    None => {
                        self.asides.push((key.clone(), Restorer::new(&self.map)));
                        self.asides.len() - 1
                    }
                };
                let text = self.asides[i].1.push(&text);
                if !text.is_empty() {
                    out.push(Event::Aside { key, text });
                }
            }
            e @ (Event::Finish(_) | Event::Usage(_)) => {
                self.flush_text(&mut out);
                self.flush_call(&mut out);
                self.flush_asides(&mut out);
                out.push(e);
            }
        }
        out
    }

    /// Whatever is still held, at the end of the stream.
    pub fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        self.flush_text(&mut out);
        self.flush_call(&mut out);
        self.flush_asides(&mut out);
        out
    }

    /// The stream broke: what is held (at most the start of a placeholder,
    /// and a tool call a successor will make again) is dropped, never shown
    /// half restored. The answer goes on from what the app has seen.
    pub fn abandon(&mut self) {
        drop(self.finish());
    }

    fn flush_text(&mut self, out: &mut Vec<Event>) {
        let text = self.text.finish();
        if !text.is_empty() {
            out.push(Event::text(text));
        }
    }

    fn flush_asides(&mut self, out: &mut Vec<Event>) {
        for (key, r) in &mut self.asides {
            let text = r.finish();
            if !text.is_empty() {
                out.push(Event::Aside { key: key.clone(), text });
            }
        }
    }

    fn flush_call(&mut self, out: &mut Vec<Event>) {
        if let Some((index, mut r)) = self.call.take() {
            let arguments = r.finish();
            if !arguments.is_empty() {
                out.push(Event::ToolCall {
                    index,
                    id: None,
                    name: None,
                    arguments,
                });
            }
        }
    }
}

/// Restores a non-stream OpenAI `chat.completion` in place: every string of
/// every choice's `message` (content, text parts, refusal, reasoning …),
/// with tool calls' (and the legacy `function_call`'s) `arguments` texts
/// restored JSON-aware.
pub fn restore_completion(completion: &mut Value, map: &PlaceholderMap) {
    if map.is_empty() {
        return;
    }
    let Some(Value::Array(choices)) = completion.get_mut("choices") else {
        return;
    };
    for choice in choices {
        if let Some(msg) = choice.get_mut("message") {
            restore_value(msg, map, false);
        }
    }
}

/// `json_text`: `v` is the string value of an `arguments` key, a JSON text
/// in which a restored value must be escaped.
fn restore_value(v: &mut Value, map: &PlaceholderMap, json_text: bool) {
    match v {
        Value::String(s) if json_text => *s = restore_json_all(s, map),
        Value::String(s) => *s = restore_all(s, map),
        Value::Array(items) => items.iter_mut().for_each(|x| restore_value(x, map, false)),
        Value::Object(fields) => {
            for (k, x) in fields.iter_mut() {
                restore_value(x, map, k == "arguments");
            }
        }
        _ => {}
    }
}
