//! Turning token pieces into answer text: a UTF-8 decoder that keeps a
//! character split across two pieces until it is complete, and a stop-string
//! matcher that holds back text which could be the start of a stop string.
//! Pure code, no llama.cpp, so both are tested on exact byte sequences.

/// Decodes a stream of byte pieces. A token can end inside a multi-byte
/// character (byte-fallback tokens for CJK and emoji): the incomplete tail is
/// kept for the next piece, so a split character is never replaced by U+FFFD.
/// Only bytes that can never become valid UTF-8 are replaced.
#[derive(Debug, Default)]
pub struct Utf8Decoder {
    tail: Vec<u8>,
}

impl Utf8Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `piece` and returns every character now complete.
    pub fn push(&mut self, piece: &[u8]) -> String {
        self.tail.extend_from_slice(piece);
        let mut out = String::new();
        let mut rest: &[u8] = &self.tail;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // `valid_up_to` is a char boundary by definition.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // Incomplete at the end: wait for the next piece.
                        None => {
                            rest = after;
                            break;
                        }
                        // Bytes that no continuation can repair.
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let start = self.tail.len() - keep;
        self.tail.drain(..start);
        out
    }

    /// Bytes held back, waiting for the rest of a character.
    pub fn pending(&self) -> usize {
        self.tail.len()
    }

    /// Ends the stream: an unfinished character is dropped (it never became
    /// text), and the number of bytes dropped is returned.
    pub fn finish(&mut self) -> usize {
        let n = self.tail.len();
        self.tail.clear();
        n
    }
}

/// Finds stop strings in streamed text. Text that might be the beginning of
/// a stop string is held back until the next piece decides; the stop string
/// itself, and anything after it, is never released.
#[derive(Debug)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text not released yet, after the first `shown` bytes.
    held: String,
    /// Leading bytes of `held` that the app has already seen (the end of
    /// an answer this generation continues): context for a stop string that
    /// begins there, never released again.
    shown: usize,
    stopped: bool,
}

/// What one push released.
#[derive(Debug, PartialEq, Eq)]
pub struct Released {
    /// Text safe to send to the app.
    pub text: String,
    /// A stop string was found: generation must end.
    pub stopped: bool,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            shown: 0,
            stopped: false,
        }
    }

    /// A matcher for a generation that continues `shown`, text the app has
    /// already seen (another backend's partial answer): a stop string that
    /// begins at its end and ends in the new text still stops.
    pub fn after(stops: Vec<String>, shown: &str) -> Self {
        let mut m = Self::new(stops);
        m.held = shown.to_owned();
        let keep = m.longest_partial_suffix();
        m.held.drain(..m.held.len() - keep);
        m.shown = m.held.len();
        m
    }

    pub fn push(&mut self, text: &str) -> Released {
        if self.stopped {
            return Released {
                text: String::new(),
                stopped: true,
            };
        }
        if self.stops.is_empty() {
            return Released {
                text: text.to_owned(),
                stopped: false,
            };
        }
        self.held.push_str(text);
        // The earliest stop string wins; the text before it is released.
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            self.held.truncate(at);
            self.stopped = true;
            let text = self.held.get(self.shown..).unwrap_or_default().to_owned();
            self.held.clear();
            return Released { text, stopped: true };
        }
        let keep = self.longest_partial_suffix();
        let release = self.held.len() - keep;
        let rest = self.held.split_off(release);
        let released = std::mem::replace(&mut self.held, rest);
        let text = released.get(self.shown.min(release)..).unwrap_or_default().to_owned();
        self.shown = self.shown.saturating_sub(release);
        Released { text, stopped: false }
    }

    /// The held text at the end of the answer (no stop string came).
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        let text = self.held.get(self.shown..).unwrap_or_default().to_owned();
        self.held.clear();
        self.shown = 0;
        text
    }

    /// Length of the longest suffix of `held` that is a proper prefix of a
    /// stop string.
    fn longest_partial_suffix(&self) -> usize {
        let max = self
            .stops
            .iter()
            .map(|s| s.len() - 1)
            .max()
            .unwrap_or(0)
            .min(self.held.len());
        (1..=max)
            .rev()
            .find(|&k| {
                let start = self.held.len() - k;
                self.held.is_char_boundary(start) && self.stops.iter().any(|s| s.starts_with(&self.held[start..]))
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Feeds `pieces` and returns the text released after each one.
    fn decode(pieces: &[&[u8]]) -> Vec<String> {
        let mut d = Utf8Decoder::new();
        pieces.iter().map(|p| d.push(p)).collect()
    }

    #[test]
    fn split_chinese_character_waits_for_its_tail() {
        // 中 = E4 B8 AD, 文 = E6 96 87
        assert_eq!(
            decode(&[b"\xE4", b"\xB8", b"\xAD\xE6\x96", b"\x87!"]),
            ["", "", "中", "文!"]
        );
    }

    #[test]
    fn split_emoji_in_every_position() {
        let emoji = "👋🏽".as_bytes(); // two 4-byte scalars
        for cut in 0..=emoji.len() {
            let out = decode(&[&emoji[..cut], &emoji[cut..]]).concat();
            assert_eq!(out, "👋🏽", "cut at {cut}");
            assert!(!out.contains('\u{FFFD}'));
        }
        // One byte per piece.
        let bytes: Vec<&[u8]> = emoji.chunks(1).collect();
        assert_eq!(decode(&bytes).concat(), "👋🏽");
    }

    #[test]
    fn genuinely_invalid_bytes_are_replaced_once() {
        assert_eq!(decode(&[b"a\xFFb"]), ["a\u{FFFD}b"]);
        // A lead byte followed by a non-continuation byte is invalid at once.
        assert_eq!(decode(&[b"\xE4", b"x"]), ["", "\u{FFFD}x"]);
    }

    #[test]
    fn unfinished_character_at_the_end_is_dropped() {
        let mut d = Utf8Decoder::new();
        assert_eq!(d.push("ok\u{4E2D}".as_bytes().split_at(4).0), "ok");
        assert_eq!(d.pending(), 2);
        assert_eq!(d.finish(), 2);
        assert_eq!(d.pending(), 0);
    }

    fn run_stops(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool, String) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        let mut stopped = false;
        for p in pieces {
            let r = m.push(p);
            out.push(r.text);
            if r.stopped {
                stopped = true;
                break;
            }
        }
        (out, stopped, m.finish())
    }

    #[test]
    fn stop_inside_one_piece() {
        let (out, stopped, rest) = run_stops(&["END"], &["abc END xyz"]);
        assert_eq!((out.concat().as_str(), stopped, rest.as_str()), ("abc ", true, ""));
    }

    #[test]
    fn stop_spanning_pieces_is_never_emitted() {
        let (out, stopped, _) = run_stops(&["</s>"], &["hello <", "/", "s> more"]);
        assert_eq!(out, ["hello ", "", ""]);
        assert!(stopped);
        assert_eq!(out.concat(), "hello ");
    }

    /// Continuing another backend's answer: a stop string that begins in
    /// the text already shown and ends in the new text stops, and the shown
    /// part is never released again.
    #[test]
    fn a_stop_begun_in_the_text_already_shown_stops() {
        let stops = || vec!["END".to_string()];
        let mut m = StopMatcher::after(stops(), "the cloud wrote E");
        let r = m.push("ND and more");
        assert_eq!((r.text.as_str(), r.stopped), ("", true));

        // No stop after all: the shown "EN" is context only, never repeated.
        let mut m = StopMatcher::after(stops(), "partial EN");
        let r = m.push("d");
        assert_eq!((r.text.as_str(), r.stopped), ("d", false));
        assert_eq!(m.push(" go").text, " go");
        assert_eq!(m.finish(), "");

        let mut m = StopMatcher::after(stops(), "EN");
        assert_eq!(m.push("").text, "");
        assert_eq!(m.finish(), "", "held shown text is not released at the end");

        // Shown text with nothing to do with the stops holds nothing back.
        let mut m = StopMatcher::after(stops(), "café ");
        assert_eq!(m.push("au lait").text, "au lait");
    }

    #[test]
    fn held_text_is_released_when_it_turns_out_not_to_stop() {
        let (out, stopped, rest) = run_stops(&["STOP"], &["ST", "OX", " done"]);
        assert_eq!(out, ["", "STOX", " done"]);
        assert!(!stopped);
        assert_eq!(rest, "");
        let (out, stopped, rest) = run_stops(&["STOP"], &["a ST"]);
        assert_eq!((out, stopped, rest.as_str()), (vec!["a ".to_string()], false, "ST"));
    }

    #[test]
    fn earliest_of_several_stops_wins_and_multibyte_stops_work() {
        let (out, stopped, _) = run_stops(&["zz", "。"], &["你好", "。", "zz"]);
        assert_eq!(out.concat(), "你好");
        assert!(stopped);
        let (out, _, _) = run_stops(&["b", "ab"], &["xab"]);
        assert_eq!(out.concat(), "x");
    }

    #[test]
    fn no_stops_passes_through() {
        let (out, stopped, rest) = run_stops(&[], &["a", "b"]);
        assert_eq!((out.concat().as_str(), stopped, rest.as_str()), ("ab", false, ""));
    }
}
