//! The placeholder map: which value hides behind which placeholder, the
//! matcher that finds every known value in a text, and the look-ups the
//! restorers use (by whole placeholder, by placeholder prefix).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// One entity the privacy scanner found.
///
/// Offsets are bytes within the message's text as [`api::Message::text`]
/// gives it: the string content, or the text parts joined by `"\n"`. A span
/// that is empty, out of range, or not on char boundaries is ignored; spans
/// that overlap within a message are merged into one value (the label of the
/// one that starts first), so no flagged byte is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// Index of the message in `ChatRequest::messages`.
    pub message: usize,
    pub byte_start: usize,
    pub byte_end: usize,
    /// The entity kind (`"email"`, `"person"`, `"credit_card"`, …): it names
    /// the placeholder (`[CREDIT_CARD_1]`) and decides whether the value is
    /// matched regardless of ASCII case (e-mail addresses are).
    pub label: &'static str,
}

/// Labels whose values are the same value whatever their ASCII case.
fn is_caseless(label: &str) -> bool {
    label.eq_ignore_ascii_case("email")
}

/// `credit_card` → `CREDIT_CARD`: the part of a placeholder before its number.
fn stem(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "REDACTED".to_owned() } else { s }
}

/// The bytes a placeholder is made of between its brackets, in any case.
pub(crate) fn is_placeholder_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// One hidden value.
struct Entry {
    /// `[EMAIL_1]`, always upper case.
    placeholder: String,
    label: &'static str,
    /// The value as first flagged; what restoration writes back.
    value: String,
    /// `value` escaped for the inside of a JSON string (no quotes).
    json_escaped: String,
}

/// A pattern the matcher looks for, and the entry it stands for.
struct Pattern {
    entry: usize,
    text: String,
    /// Matched regardless of ASCII case.
    caseless: bool,
}

struct Inner {
    /// In numbering order: first flagged first.
    entries: Vec<Entry>,
    /// Sorted by ASCII-lower-cased first byte, then longest first, then
    /// entry: the patterns that may start at a byte `b` are
    /// `patterns[buckets[b]..buckets[b + 1]]`, the first that matches wins.
    ///
    /// A map is built per request for a handful of values, so this table
    /// (built in nanoseconds) beats an automaton (tens of microseconds to
    /// build, for a few KB of text to search).
    patterns: Vec<Pattern>,
    buckets: [u32; 257],
    /// Upper-case placeholder → entry, for case-insensitive restoration.
    by_placeholder: HashMap<Box<[u8]>, usize>,
    /// Upper-case placeholders, sorted, for the prefix test of streaming.
    sorted: Vec<Box<[u8]>>,
    /// Length in bytes of the longest placeholder.
    max_len: usize,
}

/// Which value hides behind which placeholder, for one request.
///
/// Cheap to clone (shared). Its `Debug` shows placeholders, never values.
#[derive(Clone)]
pub struct PlaceholderMap {
    inner: Arc<Inner>,
}

impl fmt::Debug for PlaceholderMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlaceholderMap")
            .field(
                "placeholders",
                &self.inner.entries.iter().map(|e| &e.placeholder).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A match of a known value in a text.
#[derive(Debug, Clone, Copy)]
struct Found {
    start: usize,
    end: usize,
    entry: usize,
}

impl PlaceholderMap {
    /// Number of distinct hidden values.
    pub fn len(&self) -> usize {
        self.inner.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.entries.is_empty()
    }

    /// The distinct labels of the hidden values, in first-flagged order
    /// (for the `tandem` object and metrics: never the values).
    pub fn labels(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for e in &self.inner.entries {
            if !out.contains(&e.label) {
                out.push(e.label);
            }
        }
        out
    }

    /// Every placeholder with its label, in numbering order.
    pub fn placeholders(&self) -> impl Iterator<Item = (&str, &'static str)> {
        self.inner.entries.iter().map(|e| (e.placeholder.as_str(), e.label))
    }

    /// The value a placeholder stands for; the placeholder's ASCII case does
    /// not matter.
    pub fn value(&self, placeholder: &str) -> Option<&str> {
        let key: Vec<u8> = placeholder.bytes().map(|b| b.to_ascii_uppercase()).collect();
        self.inner
            .by_placeholder
            .get(&key[..])
            .map(|&i| self.inner.entries[i].value.as_str())
    }

    /// `text` with every known value (in any of its spellings: as is,
    /// JSON-escaped, `\u`-escaped) replaced by its placeholder. For text that
    /// must leave the device besides the request itself, such as the answer
    /// so far when the cloud continues it.
    pub fn redact_str(&self, text: &str) -> String {
        let found = self.find(text);
        if found.is_empty() {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for f in found {
            out.push_str(text.get(at..f.start).unwrap_or_default());
            out.push_str(&self.inner.entries[f.entry].placeholder);
            at = f.end;
        }
        out.push_str(text.get(at..).unwrap_or_default());
        out
    }

    /// Non-overlapping matches of known values, leftmost first and, at one
    /// position, longest first.
    fn find(&self, text: &str) -> Vec<Found> {
        let inner = &*self.inner;
        let mut out = Vec::new();
        if inner.patterns.is_empty() {
            return out;
        }
        let hay = text.as_bytes();
        let mut i = 0;
        while let Some(&byte) = hay.get(i) {
            let key = usize::from(byte.to_ascii_lowercase());
            let (a, b) = (inner.buckets[key] as usize, inner.buckets[key + 1] as usize);
            if a == b {
                i += 1;
                continue;
            }
            let hit = inner.patterns.get(a..b).unwrap_or_default().iter().find(|p| {
                let end = i + p.text.len();
                hay.get(i..end).is_some_and(|got| {
                    if p.caseless {
                        got.eq_ignore_ascii_case(p.text.as_bytes())
                    } else {
                        got == p.text.as_bytes()
                    }
                }) && text.is_char_boundary(end)
            });
            match hit {
                Some(p) => {
                    let end = i + p.text.len();
                    out.push(Found {
                        start: i,
                        end,
                        entry: p.entry,
                    });
                    i = end;
                }
                None => i += 1,
            }
        }
        out
    }

    // --- for the restorers ---

    pub(crate) fn max_len(&self) -> usize {
        self.inner.max_len
    }

    /// The entry of a whole placeholder, `upper` being already upper case.
    pub(crate) fn lookup_upper(&self, upper: &[u8]) -> Option<usize> {
        self.inner.by_placeholder.get(upper).copied()
    }

    /// Whether `upper` (upper case) is the start of a placeholder but not a
    /// whole one: the streaming restorer must wait for more text.
    pub(crate) fn is_proper_prefix_upper(&self, upper: &[u8]) -> bool {
        let sorted = &self.inner.sorted;
        let i = sorted.partition_point(|p| &p[..] < upper);
        sorted
            .get(i)
            .is_some_and(|p| p.len() > upper.len() && p.starts_with(upper))
    }

    pub(crate) fn entry_value(&self, entry: usize) -> &str {
        self.inner.entries.get(entry).map_or("", |e| e.value.as_str())
    }

    pub(crate) fn entry_json(&self, entry: usize) -> &str {
        self.inner.entries.get(entry).map_or("", |e| e.json_escaped.as_str())
    }
}

/// Collects values in first-flagged order and numbers them per label.
#[derive(Default)]
pub(crate) struct MapBuilder {
    entries: Vec<Entry>,
    /// Every spelling seen so far → entry.
    exact: HashMap<String, usize>,
    /// ASCII-lower-cased value → entry, for caseless entries only.
    caseless: HashMap<String, usize>,
    /// Stem → last number given.
    counters: HashMap<String, usize>,
}

impl MapBuilder {
    /// Adds a flagged value; a value seen before keeps its placeholder.
    pub(crate) fn add(&mut self, label: &'static str, value: &str) {
        if value.is_empty() || self.exact.contains_key(value) {
            return;
        }
        let lower = value.to_ascii_lowercase();
        if let Some(&i) = self.caseless.get(&lower) {
            self.exact.insert(value.to_owned(), i);
            return;
        }
        let stem = stem(label);
        let n = self.counters.entry(stem.clone()).or_insert(0);
        *n += 1;
        let placeholder = format!("[{stem}_{n}]");
        let i = self.entries.len();
        self.exact.insert(value.to_owned(), i);
        if is_caseless(label) {
            self.caseless.insert(lower, i);
        }
        self.entries.push(Entry {
            placeholder,
            label,
            value: value.to_owned(),
            json_escaped: json_escape(value),
        });
    }

    pub(crate) fn build(self) -> PlaceholderMap {
        let mut patterns = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let caseless = is_caseless(e.label);
            let mut push = |text: &str, caseless: bool| {
                if !patterns.iter().any(|p: &Pattern| p.entry == i && p.text == text) {
                    patterns.push(Pattern {
                        entry: i,
                        text: text.to_owned(),
                        caseless,
                    });
                }
            };
            push(&e.value, caseless);
            // The value inside a JSON document (tool-call arguments, a tool's
            // result): escaped as serde_json does, and as `ensure_ascii`
            // encoders do (`\u5f20`, hex in either case).
            push(&e.json_escaped, caseless);
            if !e.value.is_ascii() {
                push(&ascii_json_escape(&e.json_escaped), true);
            }
        }
        // Patterns are never empty: values are not, nor their escapes.
        let first = |p: &Pattern| p.text.as_bytes().first().map_or(0, u8::to_ascii_lowercase);
        patterns.sort_by_key(|p| (first(p), std::cmp::Reverse(p.text.len()), p.entry));
        let mut buckets = [0u32; 257];
        for p in &patterns {
            buckets[usize::from(first(p)) + 1] += 1;
        }
        let mut sum = 0;
        for b in &mut buckets {
            sum += *b;
            *b = sum;
        }
        let mut by_placeholder = HashMap::new();
        let mut sorted = Vec::new();
        let mut max_len = 0;
        for (i, e) in self.entries.iter().enumerate() {
            let key: Box<[u8]> = e.placeholder.as_bytes().into();
            max_len = max_len.max(key.len());
            by_placeholder.insert(key.clone(), i);
            sorted.push(key);
        }
        sorted.sort_unstable();
        PlaceholderMap {
            inner: Arc::new(Inner {
                entries: self.entries,
                patterns,
                buckets,
                by_placeholder,
                sorted,
                max_len,
            }),
        }
    }
}

/// The inside of a JSON string holding `s`, without the quotes.
pub(crate) fn json_escape(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_owned()).to_string();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .map_or_else(String::new, str::to_owned)
}

/// `json_escape`d text with every non-ASCII char as `\uXXXX` (UTF-16).
fn ascii_json_escape(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len() * 2);
    for c in escaped.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn map(values: &[(&'static str, &str)]) -> PlaceholderMap {
        let mut b = MapBuilder::default();
        for (l, v) in values {
            b.add(l, v);
        }
        b.build()
    }

    #[test]
    fn stems_and_numbers_per_label() {
        let m = map(&[
            ("email", "a@x.io"),
            ("person", "Ann"),
            ("email", "b@x.io"),
            ("credit_card", "4111"),
            ("", "zz"),
            ("ip-address", "1.2.3.4"),
        ]);
        let got: Vec<_> = m.placeholders().map(|(p, _)| p.to_owned()).collect();
        assert_eq!(
            got,
            [
                "[EMAIL_1]",
                "[PERSON_1]",
                "[EMAIL_2]",
                "[CREDIT_CARD_1]",
                "[REDACTED_1]",
                "[IP_ADDRESS_1]"
            ]
        );
        assert_eq!(m.labels(), ["email", "person", "credit_card", "", "ip-address"]);
        assert_eq!(m.value("[email_2]"), Some("b@x.io"));
        assert_eq!(m.value("[EMAIL_3]"), None);
    }

    #[test]
    fn emails_are_one_value_whatever_the_case_other_labels_are_exact() {
        let m = map(&[
            ("email", "Ann@X.io"),
            ("email", "ann@x.IO"),
            ("person", "Ann"),
            ("person", "ANN"),
        ]);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m.redact_str("ANN@x.io, Ann, ann, ANN"),
            "[EMAIL_1], [PERSON_1], ann, [PERSON_2]"
        );
    }

    #[test]
    fn leftmost_longest_and_escaped_spellings() {
        let m = map(&[
            ("person", "Ann"),
            ("person", "Ann Lee"),
            ("person", "张伟"),
            ("secret", r#"a"b\c"#),
        ]);
        assert_eq!(m.redact_str("Ann Lee and Ann"), "[PERSON_2] and [PERSON_1]");
        assert_eq!(
            m.redact_str(r#"{"n":"\u5f20\u4F1F","s":"a\"b\\c"}"#),
            r#"{"n":"[PERSON_3]","s":"[SECRET_1]"}"#
        );
    }

    #[test]
    fn debug_never_shows_values() {
        let m = map(&[("email", "secret@x.io")]);
        let d = format!("{m:?}");
        assert!(d.contains("[EMAIL_1]") && !d.contains("secret"), "{d}");
    }

    #[test]
    fn prefix_test() {
        let m = map(&[("email", "a@x.io"), ("person", "Ann")]);
        for (tail, want) in [
            ("[", true),
            ("[E", true),
            ("[EMAIL_", true),
            ("[EMAIL_1", true),
            ("[EMAIL_1]", false),
            ("[EMAIL_2", false),
            ("[X", false),
            ("[PERSON", true),
        ] {
            assert_eq!(m.is_proper_prefix_upper(tail.as_bytes()), want, "{tail}");
        }
    }
}
