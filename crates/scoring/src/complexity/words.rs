//! A word index for the keyword patterns made of ASCII letters and spaces.
//!
//! Most patterns are words or short phrases. Instead of running every byte
//! through one large automaton (whose tables do not fit in the CPU cache),
//! the byte scan looks up each word of the text once, by its first four
//! lowercase letters packed into a `u32`, in a small open-addressing table;
//! the few candidates under that key are then compared with the text. The
//! remaining patterns (those that start with a non-ASCII character: Chinese,
//! logic symbols) go to a small Aho-Corasick automaton.

/// A pattern as the index stores it.
#[derive(Debug, Clone)]
struct WordPat {
    /// Lowercase bytes; a space stands for a space or a hyphen.
    text: Box<[u8]>,
    family: u8,
    /// A stem: the text may continue with more letters.
    stem: bool,
}

/// Table size: a power of two well above the number of distinct keys, so
/// linear probing stays short.
const SLOTS: usize = 2048;

pub(super) struct WordIndex {
    /// `(key, first, count)`: candidates `pats[first..first + count]`; key 0
    /// marks an empty slot (every key starts with a letter, so none is 0).
    slots: Box<[(u32, u16, u16)]>,
    /// Candidates grouped by key, longest first (leftmost-longest matching).
    pats: Vec<WordPat>,
}

/// Is this pattern for the word index: printable ASCII that starts with a
/// letter, single spaces, an optional trailing `*`?
pub(super) fn is_word_pattern(p: &str) -> bool {
    let body = p.strip_suffix('*').unwrap_or(p);
    body.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && body.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && !body.ends_with(' ')
        && !body.contains("  ")
}

/// The key of a word: its first letters (at most four), lowercased, packed
/// into a `u32`; shorter words leave zero bytes. Returns 0 when `text` does
/// not start with a letter.
#[inline]
fn key(text: &[u8]) -> u32 {
    let mut k = 0u32;
    let mut i = 0;
    while i < 4 && i < text.len() {
        let b = text[i];
        if !b.is_ascii_alphabetic() {
            break;
        }
        k |= u32::from(b | 0x20) << (8 * i);
        i += 1;
    }
    k
}

#[inline]
fn slot_of(k: u32) -> usize {
    (k.wrapping_mul(0x9E37_79B1) >> 21) as usize & (SLOTS - 1)
}

/// Case-insensitive comparison where a space in the pattern also accepts a
/// hyphen in the text.
#[inline]
fn same(text: &[u8], pat: &[u8]) -> bool {
    text.len() == pat.len()
        && text
            .iter()
            .zip(pat)
            .all(|(&t, &p)| t.to_ascii_lowercase() == p || (p == b' ' && t == b'-'))
}

impl WordIndex {
    /// Builds the index from `(pattern, family)` pairs that pass
    /// [`is_word_pattern`]; others are ignored.
    pub(super) fn new<'a>(patterns: impl IntoIterator<Item = (&'a str, u8)>) -> Self {
        let mut entries: Vec<(u32, WordPat)> = Vec::new();
        for (p, family) in patterns {
            if !is_word_pattern(p) {
                continue;
            }
            let (body, stem) = match p.strip_suffix('*') {
                Some(b) => (b, true),
                None => (p, false),
            };
            let text: Box<[u8]> = body.bytes().map(|b| b.to_ascii_lowercase()).collect();
            // A stem shorter than four letters would need a shorter key than
            // the words it prefixes; the lexicon has none (a test checks).
            entries.push((key(&text), WordPat { text, family, stem }));
        }
        // Group by key; longest pattern first within a key.
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.text.len().cmp(&a.1.text.len())));
        let mut slots = vec![(0u32, 0u16, 0u16); SLOTS].into_boxed_slice();
        let mut pats = Vec::with_capacity(entries.len());
        let mut i = 0;
        while i < entries.len() {
            let k = entries[i].0;
            let first = pats.len();
            while i < entries.len() && entries[i].0 == k {
                pats.push(entries[i].1.clone());
                i += 1;
            }
            let mut s = slot_of(k);
            while slots[s].0 != 0 {
                s = (s + 1) & (SLOTS - 1);
            }
            // Both fit: the lexicon has under a thousand patterns.
            slots[s] = (k, first as u16, (pats.len() - first) as u16);
        }
        WordIndex { slots, pats }
    }

    /// Matches the patterns at the start of a word at `hay[start..]` (the
    /// caller checks the left boundary). Returns the family and the end of
    /// the longest match.
    #[inline]
    pub(super) fn match_at(&self, hay: &[u8], start: usize) -> Option<(u8, usize)> {
        let rest = hay.get(start..)?;
        let k = key(rest);
        if k == 0 {
            return None;
        }
        let mut s = slot_of(k);
        loop {
            let (sk, first, count) = self.slots[s];
            if sk == 0 {
                return None;
            }
            if sk == k {
                let cands = self
                    .pats
                    .get(usize::from(first)..usize::from(first) + usize::from(count))?;
                return cands.iter().find_map(|p| {
                    let n = p.text.len();
                    if !same(rest.get(..n)?, &p.text) {
                        return None;
                    }
                    let glued = p.text.last().is_some_and(u8::is_ascii_alphanumeric)
                        && rest.get(n).is_some_and(u8::is_ascii_alphanumeric);
                    if glued && !p.stem {
                        return None;
                    }
                    Some((p.family, start + n))
                });
            }
            s = (s + 1) & (SLOTS - 1);
        }
    }

    /// How many patterns the index holds.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.pats.len()
    }
}
