//! `api::sse::SseParser` fed an arbitrary byte stream in arbitrary pieces.
//!
//! Input: one seed byte, then the stream. The seed chooses where the stream
//! is cut (empty pieces included: an HTTP/2 DATA frame may be empty); for
//! one seed in eight, the stream is followed by filler (one unterminated
//! line, or `data:` lines with no blank line) until the parser must refuse,
//! so the size limit is reached from whatever state the stream left. Under
//! `cfg(fuzzing)` the limit is 4 KiB, the same code with a reachable value.
//!
//! Checked against a byte-at-a-time model of the SSE line rules that knows
//! nothing of pieces: every push returns exactly the events (or the error)
//! the model completes within that piece; a push that returns `Ok` leaves at
//! most `MAX_EVENT_BYTES` buffered, and `TooLarge` comes exactly when more
//! would be; no panic anywhere.
#![no_main]

use api::sse::{MAX_EVENT_BYTES, SseError, SseEvent, SseParser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&seed, stream)) = input.split_first() else {
        return;
    };
    let mut h = Harness::default();
    for piece in Cuts::new(seed, stream) {
        if !h.push(piece) {
            return;
        }
    }
    if seed >= 0xe0 {
        h.fill_to_limit(seed & 1 == 1);
    }
});

#[derive(Default)]
struct Harness {
    parser: SseParser,
    model: Model,
}

impl Harness {
    /// Pushes one piece into both; false once they (equally) refuse.
    fn push(&mut self, piece: &[u8]) -> bool {
        let got = self.parser.push(piece);
        let want = self.model.push(piece);
        assert_eq!(got, want, "piece {:?}", String::from_utf8_lossy(piece));
        match got {
            Ok(_) => {
                assert!(self.model.buffered() <= MAX_EVENT_BYTES);
                assert_eq!(self.parser.has_partial(), self.model.has_partial());
                true
            }
            // A client abandons the stream at the first error.
            Err(_) => false,
        }
    }

    /// Pushes the same filler piece until both refuse it as too large:
    /// every piece adds to what is buffered, so that must happen.
    fn fill_to_limit(&mut self, data_lines: bool) {
        let piece: Vec<u8> = if data_lines {
            let value = vec![b'y'; MAX_EVENT_BYTES / 64];
            [&b"data: "[..], &value, b"\n"].concat().repeat(4)
        } else {
            vec![b'x'; MAX_EVENT_BYTES / 16 + 1]
        };
        for _ in 0..40 {
            if !self.push(&piece) {
                return;
            }
        }
        panic!("{} bytes buffered and still no error", self.model.buffered());
    }
}

/// Pieces of the stream whose lengths (0 to 15) come from a small PRNG
/// seeded by the input's first byte.
struct Cuts<'a> {
    state: u32,
    rest: &'a [u8],
    done: bool,
}

impl<'a> Cuts<'a> {
    fn new(seed: u8, stream: &'a [u8]) -> Self {
        Cuts {
            state: u32::from(seed).wrapping_mul(2_654_435_761) | 1,
            rest: stream,
            done: false,
        }
    }
}

impl<'a> Iterator for Cuts<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        if self.rest.is_empty() {
            self.done = true;
            return Some(self.rest);
        }
        // xorshift32
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        let n = (self.state % 16) as usize;
        let (piece, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        Some(piece)
    }
}

/// The event-stream rules (WHATWG HTML, "Interpreting an event stream"),
/// restricted to the fields an OpenAI stream uses, one byte at a time.
#[derive(Default)]
struct Model {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
    /// The last byte seen was a `\r`: a `\n` right after it ends nothing.
    after_cr: bool,
}

impl Model {
    fn push(&mut self, piece: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        for &b in piece {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    out.extend(self.line_done(&line)?);
                }
                _ => self.line.push(b),
            }
        }
        if self.buffered() > MAX_EVENT_BYTES {
            return Err(SseError::TooLarge);
        }
        Ok(out)
    }

    fn buffered(&self) -> usize {
        self.line.len() + self.data.len()
    }

    fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.has_data
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            let event = self.event.take();
            if !std::mem::take(&mut self.has_data) {
                return Ok(None);
            }
            let data = String::from_utf8(std::mem::take(&mut self.data)).map_err(|_| SseError::InvalidUtf8)?;
            return Ok(Some(SseEvent { event, data }));
        }
        if line.starts_with(b":") {
            return Ok(None);
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => (&line[..i], line[i + 1..].strip_prefix(b" ").unwrap_or(&line[i + 1..])),
            None => (line, &[][..]),
        };
        if name == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        } else if name == b"event" {
            self.event = Some(String::from_utf8(value.to_vec()).map_err(|_| SseError::InvalidUtf8)?);
        }
        Ok(None)
    }
}
