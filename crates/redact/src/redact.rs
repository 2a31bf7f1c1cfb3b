//! Turning a request and the scanner's spans into a redacted copy and the
//! map that undoes it.
//!
//! Numbering follows the order in which values are first *flagged*, message
//! by message: a growing conversation resends its earlier messages, whose
//! spans come out the same, so earlier values keep their numbers and new ones
//! take the next. Replacement then covers every occurrence of every value,
//! flagged or not (an earlier answer, a tool's result, tool-call arguments),
//! so no value leaves in a place the scanner did not look.

use api::{ChatRequest, Content, Message};
use serde_json::Value;

use crate::map::{MapBuilder, PlaceholderMap, Span};

/// A request ready for the cloud, and how to restore its answer.
pub struct Redaction {
    /// A copy of the request with every value replaced by its placeholder.
    pub request: ChatRequest,
    pub map: PlaceholderMap,
}

/// Replaces every value flagged by `spans` (and every other occurrence of
/// it) by a typed placeholder. Never fails: spans it cannot use are ignored.
pub fn redact(req: &ChatRequest, spans: &[Span]) -> Redaction {
    let mut builder = MapBuilder::default();
    for (label, value) in flagged_values(req, spans) {
        builder.add(label, value);
    }
    let map = builder.build();
    let mut request = req.clone();
    if !map.is_empty() {
        for m in &mut request.messages {
            redact_message(m, &map);
        }
        // Text outside the messages leaves too: a predicted output that
        // repeats the prompt, metadata, `user`, tool definitions, a JSON
        // schema, stop sequences.
        for v in request.extra.values_mut() {
            redact_json(v, &map);
        }
        for v in request.tools.iter_mut().flatten() {
            redact_json(v, &map);
        }
        if let Some(v) = &mut request.response_format {
            redact_json(v, &map);
        }
        match &mut request.stop {
            Some(api::Stop::One(s)) => *s = map.redact_str(s),
            Some(api::Stop::Many(v)) => v.iter_mut().for_each(|s| *s = map.redact_str(s)),
            None => {}
        }
    }
    Redaction { request, map }
}

/// Every string inside `v` redacted (object keys are names, not text).
fn redact_json(v: &mut Value, map: &PlaceholderMap) {
    match v {
        Value::String(s) => *s = map.redact_str(s),
        Value::Array(items) => items.iter_mut().for_each(|x| redact_json(x, map)),
        Value::Object(fields) => fields.values_mut().for_each(|x| redact_json(x, map)),
        _ => {}
    }
}

/// The texts of a message that spans point into, each with its offset in
/// `Message::text()` (text parts joined by one `"\n"`).
fn segments(m: &Message) -> Vec<(usize, &str)> {
    match &m.content {
        None => Vec::new(),
        Some(Content::Text(s)) => vec![(0, s.as_str())],
        Some(Content::Parts(parts)) => {
            let mut out = Vec::new();
            let mut off = 0;
            for t in parts.iter().filter_map(|p| p.text.as_deref()) {
                out.push((off, t));
                off += t.len() + 1;
            }
            out
        }
    }
}

/// Whether `pos` is a char boundary of the joined text.
fn is_boundary(segs: &[(usize, &str)], pos: usize) -> bool {
    segs.iter()
        .find(|(off, s)| *off <= pos && pos <= off + s.len())
        .is_some_and(|(off, s)| s.is_char_boundary(pos - off))
}

/// The flagged values in first-flagged order, with their labels.
fn flagged_values<'r>(req: &'r ChatRequest, spans: &[Span]) -> Vec<(&'static str, &'r str)> {
    let mut spans: Vec<Span> = spans.iter().filter(|s| s.byte_start < s.byte_end).copied().collect();
    // Past the messages, an index names one of the request's side texts
    // (`ChatRequest::side_texts`, which the scanner was given in the same
    // order).
    let side = if spans.iter().any(|s| s.message >= req.messages.len()) {
        req.side_texts_by_owner()
    } else {
        Vec::new()
    };
    // Stable order whatever order the scanner reported them in, and across
    // the turns of a conversation (which resends its earlier messages and
    // adds new ones at the end): the request's own fields, then message by
    // message its content and its other fields; within a text by position,
    // the longer first so it absorbs what it contains.
    // The key: (owning message or none for the request, side text or not).
    let n = req.messages.len();
    let group = |message: usize| match message.checked_sub(n) {
        None => (Some(message), false),
        Some(k) => (side.get(k).and_then(|(owner, _)| *owner), true),
    };
    spans.sort_by_key(|s| {
        (
            group(s.message),
            s.message,
            s.byte_start,
            std::cmp::Reverse(s.byte_end),
            s.label,
        )
    });
    let mut out = Vec::new();
    let mut i = 0;
    while i < spans.len() {
        let msg = spans[i].message;
        let mut j = i;
        while j < spans.len() && spans[j].message == msg {
            j += 1;
        }
        let segs = match req.messages.get(msg) {
            Some(m) => Some(segments(m)),
            None => side.get(msg - req.messages.len()).map(|(_, t)| vec![(0, *t)]),
        };
        if let Some(segs) = segs {
            let valid = spans[i..j]
                .iter()
                .filter(|s| is_boundary(&segs, s.byte_start) && is_boundary(&segs, s.byte_end));
            // Overlapping spans become their union, so no flagged byte is
            // left in clear.
            let mut merged: Vec<Span> = Vec::new();
            for s in valid {
                match merged.last_mut() {
                    Some(last) if s.byte_start < last.byte_end => last.byte_end = last.byte_end.max(s.byte_end),
                    _ => merged.push(*s),
                }
            }
            for s in merged {
                // A span across text parts hides each part's piece: the
                // joining "\n" is not in any part.
                for (off, text) in &segs {
                    let a = s.byte_start.max(*off);
                    let b = s.byte_end.min(off + text.len());
                    if a < b
                        && let Some(v) = text.get(a - off..b - off)
                    {
                        out.push((s.label, v));
                    }
                }
            }
        }
        i = j;
    }
    out
}

fn redact_message(m: &mut Message, map: &PlaceholderMap) {
    match &mut m.content {
        None => {}
        Some(Content::Text(s)) => *s = map.redact_str(s),
        Some(Content::Parts(parts)) => {
            for p in parts.iter_mut() {
                if let Some(t) = &mut p.text {
                    *t = map.redact_str(t);
                }
                // A refusal part, an image's URL or file name …
                for v in p.extra.values_mut() {
                    redact_json(v, map);
                }
            }
        }
    }
    // Everything else a message carries: earlier tool calls (their
    // arguments are a JSON text, in which values may appear escaped; the
    // map's matcher knows those spellings too) and the legacy
    // `function_call`, `name`, `refusal`, an earlier turn's reasoning …
    for v in m.extra.values_mut() {
        redact_json(v, map);
    }
    // OpenAI accepts a participant `name` only as `[a-zA-Z0-9_-]{1,64}` and
    // refuses the request otherwise: a name that held a value goes out as
    // the placeholder without its brackets (`PERSON_1`).
    if let Some(Value::String(name)) = m.extra.get_mut("name")
        && name.contains('[')
    {
        name.retain(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        name.truncate(64);
    }
}
