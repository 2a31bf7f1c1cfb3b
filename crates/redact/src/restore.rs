//! Putting values back into an answer: streaming ([`Restorer`] for text,
//! [`JsonRestorer`] for tool-call arguments) and whole ([`restore_all`],
//! [`restore_json_all`]).
//!
//! A placeholder may arrive split across chunks (`[EMA` + `IL_1]`) and with
//! its case changed by the model (`[email_1]`). The restorers hold back only
//! the text from the last `[` when it is still the start of a known
//! placeholder, and release everything else at once, so the first token is
//! not delayed: text without `[` goes straight through. Unknown placeholders
//! and look-alikes pass unchanged.

use memchr::memchr;

use crate::map::{PlaceholderMap, is_placeholder_byte};

/// Where a JSON text stands, so a placeholder can be written as the inside of
/// a string or as a whole string.
#[derive(Debug, Clone, Copy, Default)]
struct JsonState {
    in_string: bool,
    /// The previous byte inside a string was an unescaped backslash.
    escape: bool,
}

impl JsonState {
    fn advance(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
            } else if b == b'"' {
                self.in_string = true;
            }
        }
    }
}

/// The state both restorers share.
#[derive(Debug, Clone)]
struct Core {
    map: PlaceholderMap,
    /// Text held back: the start of a placeholder, beginning with `[`.
    pending: String,
    /// Upper-cased candidate, reused to avoid an allocation per `[`.
    scratch: Vec<u8>,
    /// `Some` for JSON text (tool-call arguments).
    json: Option<JsonState>,
}

impl Core {
    fn new(map: &PlaceholderMap, json: bool) -> Self {
        Core {
            map: map.clone(),
            pending: String::new(),
            scratch: Vec::new(),
            json: json.then(JsonState::default),
        }
    }

    fn push(&mut self, text: &str) -> String {
        let mut out = String::with_capacity(self.pending.len() + text.len());
        if self.pending.is_empty() {
            let hold = self.scan(text, &mut out);
            self.pending.push_str(text.get(hold..).unwrap_or_default());
        } else {
            let mut buf = std::mem::take(&mut self.pending);
            buf.push_str(text);
            let hold = self.scan(&buf, &mut out);
            buf.drain(..hold);
            self.pending = buf;
        }
        out
    }

    fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        if let Some(j) = &mut self.json {
            j.advance(rest.as_bytes());
        }
        rest
    }

    fn literal(&mut self, out: &mut String, s: &str) {
        if let Some(j) = &mut self.json {
            j.advance(s.as_bytes());
        }
        out.push_str(s);
    }

    fn replacement(&mut self, out: &mut String, entry: usize) {
        match &mut self.json {
            None => out.push_str(self.map.entry_value(entry)),
            Some(j) => {
                j.escape = false;
                if j.in_string {
                    out.push_str(self.map.entry_json(entry));
                } else {
                    // A placeholder outside any string would make invalid
                    // JSON either way; as a string it is what was meant.
                    out.push('"');
                    out.push_str(self.map.entry_json(entry));
                    out.push('"');
                }
            }
        }
    }

    /// Writes the restored `buf` to `out` and returns where the held-back
    /// suffix starts (`buf.len()` when nothing is held).
    fn scan(&mut self, buf: &str, out: &mut String) -> usize {
        let max = self.map.max_len();
        let bytes = buf.as_bytes();
        if max == 0 {
            self.literal(out, buf);
            return buf.len();
        }
        let mut emitted = 0;
        let mut pos = 0;
        loop {
            let Some(k) = memchr(b'[', bytes.get(pos..).unwrap_or_default()).map(|i| pos + i) else {
                self.literal(out, buf.get(emitted..).unwrap_or_default());
                return buf.len();
            };
            let limit = bytes.len().min(k + max);
            let mut e = k + 1;
            while e < limit && is_placeholder_byte(bytes[e]) {
                e += 1;
            }
            if e < limit && bytes[e] == b']' {
                self.scratch.clear();
                self.scratch.extend(bytes[k..=e].iter().map(u8::to_ascii_uppercase));
                if let Some(entry) = self.map.lookup_upper(&self.scratch) {
                    self.literal(out, buf.get(emitted..k).unwrap_or_default());
                    self.replacement(out, entry);
                    emitted = e + 1;
                    pos = e + 1;
                    continue;
                }
            } else if e == bytes.len() {
                self.scratch.clear();
                self.scratch.extend(bytes[k..].iter().map(u8::to_ascii_uppercase));
                if self.map.is_proper_prefix_upper(&self.scratch) {
                    self.literal(out, buf.get(emitted..k).unwrap_or_default());
                    return k;
                }
            }
            pos = k + 1;
        }
    }
}

/// Restores placeholders in streamed answer text.
#[derive(Debug, Clone)]
pub struct Restorer {
    core: Core,
}

impl Restorer {
    pub fn new(map: &PlaceholderMap) -> Self {
        Restorer {
            core: Core::new(map, false),
        }
    }

    /// The text that can be released now, placeholders restored. Holds back
    /// only a suffix that may still become a known placeholder.
    pub fn push(&mut self, text: &str) -> String {
        self.core.push(text)
    }

    /// Releases what is held (an unfinished placeholder, as it came); the
    /// restorer can then be used for a new text.
    pub fn finish(&mut self) -> String {
        self.core.finish()
    }

    /// Bytes held back now.
    pub fn held(&self) -> usize {
        self.core.pending.len()
    }
}

/// Restores placeholders in streamed tool-call arguments (a JSON text): a
/// value is written JSON-escaped inside a string, and as a whole JSON string
/// where a placeholder stands outside any string. One per tool call.
#[derive(Debug, Clone)]
pub struct JsonRestorer {
    core: Core,
}

impl JsonRestorer {
    pub fn new(map: &PlaceholderMap) -> Self {
        JsonRestorer {
            core: Core::new(map, true),
        }
    }

    pub fn push(&mut self, delta: &str) -> String {
        self.core.push(delta)
    }

    pub fn finish(&mut self) -> String {
        self.core.finish()
    }

    pub fn held(&self) -> usize {
        self.core.pending.len()
    }
}

/// A whole answer's text with its placeholders restored.
pub fn restore_all(text: &str, map: &PlaceholderMap) -> String {
    let mut r = Restorer::new(map);
    let mut out = r.push(text);
    out.push_str(&r.finish());
    out
}

/// Whole tool-call arguments (JSON text) with their placeholders restored.
pub fn restore_json_all(text: &str, map: &PlaceholderMap) -> String {
    let mut r = JsonRestorer::new(map);
    let mut out = r.push(text);
    out.push_str(&r.finish());
    out
}
