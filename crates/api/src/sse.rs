//! Incremental server-sent-events parser.
//!
//! Bytes arrive in arbitrary pieces (a chunk boundary may fall inside a line,
//! or inside a multi-byte character); `SseParser::push` returns every event
//! that is complete so far. Only `data:` and `event:` fields matter to an
//! OpenAI stream; comments (`:`) and `id:`/`retry:` are skipped.

/// One complete event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when the server sent one.
    pub event: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

/// Lines longer than this are a protocol error, not a reason to buffer
/// without bound.
#[cfg(not(fuzzing))]
pub const MAX_EVENT_BYTES: usize = 8 << 20;
/// Under `cargo fuzz` the limit is small enough for inputs of a few
/// kilobytes to reach it (fuzz/fuzz_targets/sse_parser.rs).
#[cfg(fuzzing)]
pub const MAX_EVENT_BYTES: usize = 4 << 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("event larger than {MAX_EVENT_BYTES} bytes")]
    TooLarge,
    #[error("event data is not valid UTF-8")]
    InvalidUtf8,
}

#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line not yet terminated.
    line: Vec<u8>,
    /// `data:` lines of the event being assembled.
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
    /// A `\r` ended the last piece: a following `\n` belongs to it.
    after_cr: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; returns the events completed by them.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        // An empty piece (an empty HTTP/2 DATA frame) must not forget a `\r`
        // that ended the previous one.
        if bytes.is_empty() {
            return Ok(out);
        }
        if self.after_cr && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        self.after_cr = false;
        while let Some(pos) = memchr::memchr2(b'\n', b'\r', bytes) {
            self.line.extend_from_slice(&bytes[..pos]);
            let is_cr = bytes[pos] == b'\r';
            bytes = &bytes[pos + 1..];
            if is_cr {
                if bytes.first() == Some(&b'\n') {
                    bytes = &bytes[1..];
                } else if bytes.is_empty() {
                    self.after_cr = true;
                }
            }
            let line = std::mem::take(&mut self.line);
            if let Some(ev) = self.line_done(&line)? {
                out.push(ev);
            }
        }
        self.line.extend_from_slice(bytes);
        if self.line.len() + self.data.len() > MAX_EVENT_BYTES {
            return Err(SseError::TooLarge);
        }
        Ok(out)
    }

    /// True when bytes of an unfinished event are buffered: a stream that
    /// ends here was cut.
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.has_data
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            if !self.has_data {
                self.event = None;
                return Ok(None);
            }
            let data = String::from_utf8(std::mem::take(&mut self.data)).map_err(|_| SseError::InvalidUtf8)?;
            self.has_data = false;
            return Ok(Some(SseEvent {
                event: self.event.take(),
                data,
            }));
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event = Some(String::from_utf8(value.to_vec()).map_err(|_| SseError::InvalidUtf8)?);
            }
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(pieces: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for piece in pieces {
            out.extend(p.push(piece).unwrap());
        }
        out
    }

    #[test]
    fn splits_anywhere() {
        let text = "data: {\"a\":\"你好\"}\n\n: comment\nevent: error\ndata: x\ndata: y\n\ndata: [DONE]\n\n".as_bytes();
        let whole = all(&[text]);
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].data, "{\"a\":\"你好\"}");
        assert_eq!(whole[1].event.as_deref(), Some("error"));
        assert_eq!(whole[1].data, "x\ny");
        assert_eq!(whole[2].data, "[DONE]");
        for cut in 0..text.len() {
            assert_eq!(all(&[&text[..cut], &text[cut..]]), whole, "cut at {cut}");
        }
        let bytewise: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(all(&bytewise), whole);
    }

    #[test]
    fn crlf_line_endings() {
        let whole = all(&[b"data: a\r\n\r\ndata: b\r", b"\n\r\n"]);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[1].data, "b");
        // Found by fuzz/fuzz_targets/sse_parser.rs: an empty piece between
        // `\r` and `\n` made the `\n` a second line end (an early dispatch).
        let split = all(&[b"data: a\r", b"", b"\ndata: b\n\n"]);
        assert_eq!(split, all(&[b"data: a\r\ndata: b\n\n"]));
        assert_eq!(split[0].data, "a\nb");
    }

    #[test]
    fn partial_is_reported() {
        let mut p = SseParser::new();
        p.push(b"data: {\"a\"").unwrap();
        assert!(p.has_partial());
    }
}
