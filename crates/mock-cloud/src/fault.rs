//! Fault injection: what a request asks the mock to get wrong.
//!
//! A fault is written `key=value,key=value` (the `x-mock-fault` header, and
//! [`Fault`]'s `Display`). Keys of a request's header override the server's
//! default fault one by one; `key=off` (or `none`) clears an optional key.
//!
//! | key | effect |
//! |---|---|
//! | `latency=MS` | wait before the response headers |
//! | `chunk_delay=MS` | wait before each content chunk of a stream |
//! | `status=CODE` | answer 400..=599 with an OpenAI error body |
//! | `retry_after=S` | `retry-after` header of that error (429 gets 1 by default) |
//! | `cut_after=N` | close the connection abruptly after N content chunks |
//! | `malformed_after=N` | send `data: {not json` after N content chunks, then go on |
//! | `stall_after=N` | stop after N content chunks, keep the connection open |
//! | `error_event_after=N` | send an in-band error event after N content chunks, then `[DONE]` |
//! | `chunks=N` | answer length in chunks (default 12) |
//! | `fail_first=K` | the first K requests with the same `x-mock-key` get 503 |

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest latency or chunk delay a fault may ask for: longer is a typo.
pub const MAX_DELAY_MS: u64 = 600_000;
/// Longest answer a fault may ask for, so one header cannot make the mock
/// allocate without bound.
pub const MAX_CHUNKS: u32 = 1_000_000;

const KEYS: &str = "latency, chunk_delay, status, retry_after, cut_after, malformed_after, stall_after, \
                    error_event_after, chunks, fail_first";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Milliseconds before the response headers (and before error responses).
    pub latency_ms: u64,
    /// Milliseconds before each content chunk of a stream; ignored without `stream`.
    pub chunk_delay_ms: u64,
    /// Answer with this status (400..=599) and an OpenAI error body.
    pub status: Option<u16>,
    /// `retry-after` seconds on a `status` error; a 429 without it says 1.
    pub retry_after: Option<u64>,
    /// Stream: close the connection after N content chunks, with no finish
    /// chunk and no `[DONE]`. Non-stream: close after half the body.
    pub cut_after: Option<u32>,
    /// Stream: send the line `data: {not json` after N content chunks, then
    /// carry on. Non-stream: the body is `{not json`.
    pub malformed_after: Option<u32>,
    /// Stream: after N content chunks send nothing more, and keep the
    /// connection open until the client leaves. Non-stream: the same after
    /// half the body.
    pub stall_after: Option<u32>,
    /// Stream: after N content chunks send an in-band error event, then
    /// `[DONE]`. Non-stream: status 200 with an error object as the body.
    pub error_event_after: Option<u32>,
    /// Content chunks in the answer (one word each); [`crate::DEFAULT_CHUNKS`] when unset.
    pub chunks: Option<u32>,
    /// Fail the first K requests that carry the same `x-mock-key` value
    /// (requests without it share the key "") with 503, then succeed.
    pub fail_first: Option<u32>,
}

impl Fault {
    /// Parses a header value on its own (every key absent from it at default).
    pub fn parse(s: &str) -> Result<Fault, String> {
        let mut f = Fault::default();
        f.apply(s)?;
        Ok(f)
    }

    /// Overrides the keys named in `s`, leaving the others as they are.
    /// The message of an error names the offending item.
    pub fn apply(&mut self, s: &str) -> Result<(), String> {
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((key, value)) = item.split_once('=') else {
                return Err(format!("`{item}` is not key=value"));
            };
            let (key, value) = (key.trim(), value.trim());
            let off = matches!(value, "off" | "none");
            let num = |max: u64| -> Result<u64, String> {
                match value.parse::<u64>() {
                    Ok(n) if n <= max => Ok(n),
                    Ok(_) => Err(format!("`{key}` must be at most {max}, got {value}")),
                    Err(_) => Err(format!("`{key}` needs a non-negative integer, got `{value}`")),
                }
            };
            let count = || -> Result<Option<u32>, String> {
                if off {
                    return Ok(None);
                }
                num(u64::from(MAX_CHUNKS)).map(|n| Some(n as u32))
            };
            match key {
                "latency" => self.latency_ms = if off { 0 } else { num(MAX_DELAY_MS)? },
                "chunk_delay" => self.chunk_delay_ms = if off { 0 } else { num(MAX_DELAY_MS)? },
                "status" => {
                    self.status = if off {
                        None
                    } else {
                        let code = num(599)?;
                        if code < 400 {
                            return Err(format!("`status` must be an error status (400..=599), got {code}"));
                        }
                        Some(code as u16)
                    }
                }
                "retry_after" => self.retry_after = if off { None } else { Some(num(86_400)?) },
                "cut_after" => self.cut_after = count()?,
                "malformed_after" => self.malformed_after = count()?,
                "stall_after" => self.stall_after = count()?,
                "error_event_after" => self.error_event_after = count()?,
                "chunks" => self.chunks = count()?,
                "fail_first" => self.fail_first = count()?,
                _ => return Err(format!("unknown key `{key}` (known: {KEYS})")),
            }
        }
        Ok(())
    }

    /// Checks a fault built in code the way [`Fault::apply`] checks a header.
    pub fn validate(&self) -> Result<(), String> {
        Fault::parse(&self.to_string()).map(|_| ())
    }
}

/// The header syntax, listing only the keys that differ from the default, so
/// `Fault::parse(&f.to_string()) == Ok(f)`.
impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut put = |f: &mut fmt::Formatter<'_>, key: &str, v: Option<u64>| -> fmt::Result {
            if let Some(v) = v {
                write!(f, "{sep}{key}={v}")?;
                sep = ",";
            }
            Ok(())
        };
        put(f, "latency", (self.latency_ms > 0).then_some(self.latency_ms))?;
        put(
            f,
            "chunk_delay",
            (self.chunk_delay_ms > 0).then_some(self.chunk_delay_ms),
        )?;
        put(f, "status", self.status.map(u64::from))?;
        put(f, "retry_after", self.retry_after)?;
        put(f, "cut_after", self.cut_after.map(u64::from))?;
        put(f, "malformed_after", self.malformed_after.map(u64::from))?;
        put(f, "stall_after", self.stall_after.map(u64::from))?;
        put(f, "error_event_after", self.error_event_after.map(u64::from))?;
        put(f, "chunks", self.chunks.map(u64::from))?;
        put(f, "fail_first", self.fail_first.map(u64::from))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn parses_every_key_and_round_trips() {
        let s = "latency=5,chunk_delay=2,status=429,retry_after=0,cut_after=3,malformed_after=1,\
                 stall_after=2,error_event_after=4,chunks=7,fail_first=2";
        let f = Fault::parse(s).unwrap();
        assert_eq!(f.latency_ms, 5);
        assert_eq!(f.status, Some(429));
        assert_eq!(f.retry_after, Some(0));
        assert_eq!(f.fail_first, Some(2));
        assert_eq!(f.to_string(), s);
        assert_eq!(Fault::parse(&f.to_string()).unwrap(), f);
        assert_eq!(Fault::default().to_string(), "");
    }

    #[test]
    fn header_overrides_key_by_key() {
        let mut f = Fault::parse("latency=100,cut_after=2,chunks=5").unwrap();
        f.apply(" cut_after = off , status=503,").unwrap();
        assert_eq!(f, Fault::parse("latency=100,chunks=5,status=503").unwrap());
    }

    #[test]
    fn errors_name_the_item() {
        for (input, needle) in [
            ("bogus=1", "unknown key `bogus`"),
            ("latency", "`latency` is not key=value"),
            ("chunks=-1", "`chunks` needs a non-negative integer"),
            ("status=200", "error status"),
            ("status=600", "at most 599"),
            ("latency=99999999", "at most"),
        ] {
            let err = Fault::parse(input).unwrap_err();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }
}
