//! The one error shape apps see, and the error every backend returns.
//!
//! `ApiError` renders as `{"error":{"message","type","param","code"}}` with its
//! status. `BackendError` says whose fault a failure is and whether another
//! backend may take over; `ApiError::from(BackendError)` is the only place a
//! backend failure becomes a status code.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {kind}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`,
    /// `not_found_error`, `rate_limit_error`, `server_error`, …
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// An upstream 4xx is returned to the app as the upstream wrote it.
    pub raw_body: Option<Value>,
}

#[derive(Serialize)]
struct Wire<'a> {
    error: WireInner<'a>,
}

#[derive(Serialize)]
struct WireInner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, code: Option<&'static str>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code,
            raw_body: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>, param: Option<String>) -> Self {
        ApiError {
            param,
            ..Self::new(400, "invalid_request_error", None, message)
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn not_found(message: impl Into<String>, code: &'static str) -> Self {
        Self::new(404, "invalid_request_error", Some(code), message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "authentication_error", Some("invalid_api_key"), message)
    }

    pub fn forbidden(message: impl Into<String>, code: &'static str) -> Self {
        Self::new(403, "permission_error", Some(code), message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "server_error", None, message)
    }

    /// The JSON body, as apps expect it.
    pub fn to_json(&self) -> Vec<u8> {
        if let Some(raw) = &self.raw_body {
            return serde_json::to_vec(raw).unwrap_or_default();
        }
        serde_json::to_vec(&Wire {
            error: WireInner {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        })
        .unwrap_or_default()
    }

    /// The object for an in-band SSE error event.
    pub fn to_value(&self) -> Value {
        serde_json::json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

/// Whose fault a failure is (as pingora classifies them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The request itself is wrong; another backend would refuse it too.
    Downstream,
    /// The backend failed or is unreachable; another backend may succeed.
    Upstream,
    /// Tandem itself failed.
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendErrorKind {
    /// Could not connect (refused, DNS, TLS handshake, untrusted certificate).
    Connect,
    /// No first byte or token within the configured time.
    Timeout,
    /// The stream went quiet for longer than the idle timeout.
    Stall,
    /// The connection broke in the middle of an answer.
    Interrupted,
    /// The upstream sent something that is not a valid chunk or response.
    Malformed,
    /// The upstream answered with an error status.
    Status,
    /// The upstream sent an error event inside the stream.
    InBand,
    /// The backend's queue is full or the wait exceeded its bound.
    Overloaded,
    /// The backend cannot serve this request (unsupported parameter).
    Unsupported,
    /// The backend is not available (no model loaded, circuit open, none configured).
    Unavailable,
    /// The app went away.
    Cancelled,
    /// Anything else.
    Other,
}

impl BackendErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Stall => "stall",
            Self::Interrupted => "interrupted",
            Self::Malformed => "malformed",
            Self::Status => "status",
            Self::InBand => "in_band",
            Self::Overloaded => "overloaded",
            Self::Unsupported => "unsupported",
            Self::Unavailable => "unavailable",
            Self::Cancelled => "cancelled",
            Self::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{backend}: {kind:?}: {message}")]
pub struct BackendError {
    /// Which backend (tier or endpoint) failed.
    pub backend: String,
    pub kind: BackendErrorKind,
    pub fault: Fault,
    pub message: String,
    /// The upstream's HTTP status, when it answered with one.
    pub upstream_status: Option<u16>,
    /// An upstream 4xx body, returned to the app unchanged.
    pub upstream_body: Option<Value>,
}

impl BackendError {
    pub fn new(backend: impl Into<String>, kind: BackendErrorKind, fault: Fault, message: impl Into<String>) -> Self {
        BackendError {
            backend: backend.into(),
            kind,
            fault,
            message: message.into(),
            upstream_status: None,
            upstream_body: None,
        }
    }

    pub fn upstream(backend: impl Into<String>, kind: BackendErrorKind, message: impl Into<String>) -> Self {
        Self::new(backend, kind, Fault::Upstream, message)
    }

    pub fn unsupported(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(backend, BackendErrorKind::Unsupported, Fault::Downstream, message)
    }

    /// May another backend (or another try) succeed where this one failed?
    pub fn failover_allowed(&self) -> bool {
        match self.kind {
            BackendErrorKind::Cancelled => false,
            // A parameter one backend cannot honour another may.
            BackendErrorKind::Unsupported => true,
            _ => self.fault != Fault::Downstream,
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        use BackendErrorKind as K;
        let msg = format!("{}: {}", e.backend, e.message);
        match e.kind {
            K::Status if e.fault == Fault::Downstream => {
                let status = e.upstream_status.unwrap_or(400);
                let mut err = ApiError::new(status, "invalid_request_error", Some("upstream_rejected"), msg);
                match e.upstream_body {
                    // OpenAI's shape: the app gets it as the upstream wrote it.
                    Some(body) if body.get("error").is_some_and(Value::is_object) => err.raw_body = Some(body),
                    // Another server's (vLLM's flat object, TGI's `error`
                    // string, FastAPI's `detail`): its words in ours.
                    Some(body) => {
                        if let Some(said) = ["message", "error", "detail"]
                            .iter()
                            .find_map(|k| body.get(*k).filter(|v| !v.is_null()))
                        {
                            let said = said.as_str().map_or_else(|| said.to_string(), str::to_owned);
                            err.message = format!("{}: {said}", err.message);
                        }
                        err.param = body.get("param").and_then(Value::as_str).map(str::to_owned);
                    }
                    None => {}
                }
                err
            }
            K::Unsupported => ApiError::new(400, "invalid_request_error", Some("unsupported_parameter"), msg),
            K::Timeout | K::Stall => ApiError::new(504, "server_error", Some("upstream_timeout"), msg),
            K::Overloaded => ApiError::new(503, "server_error", Some("overloaded"), msg),
            K::Unavailable => ApiError::new(503, "server_error", Some("backend_unavailable"), msg),
            K::Status if e.upstream_status == Some(429) => {
                ApiError::new(503, "server_error", Some("upstream_rate_limited"), msg)
            }
            K::Status if e.upstream_status == Some(503) => {
                ApiError::new(503, "server_error", Some("upstream_unavailable"), msg)
            }
            K::Cancelled => ApiError::new(499, "invalid_request_error", Some("client_closed"), msg),
            K::Connect | K::Interrupted | K::Malformed | K::Status | K::InBand => {
                ApiError::new(502, "server_error", Some("upstream_error"), msg)
            }
            K::Other if e.fault == Fault::Internal => ApiError::internal(msg),
            K::Other => ApiError::new(502, "server_error", Some("upstream_error"), msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape() {
        let e = ApiError::invalid_request("bad", Some("messages".into()));
        let v: Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error":{"message":"bad","type":"invalid_request_error","param":"messages","code":null}})
        );
    }

    #[test]
    fn statuses_by_kind() {
        let e = |k, f| ApiError::from(BackendError::new("b", k, f, "m")).status;
        assert_eq!(e(BackendErrorKind::Timeout, Fault::Upstream), 504);
        assert_eq!(e(BackendErrorKind::Connect, Fault::Upstream), 502);
        assert_eq!(e(BackendErrorKind::Overloaded, Fault::Upstream), 503);
        assert_eq!(e(BackendErrorKind::Unsupported, Fault::Downstream), 400);
        let mut four = BackendError::new("b", BackendErrorKind::Status, Fault::Downstream, "m");
        four.upstream_status = Some(422);
        four.upstream_body = Some(serde_json::json!({"error":{"message":"upstream says no"}}));
        let api = ApiError::from(four.clone());
        assert_eq!(api.status, 422);
        assert_eq!(api.to_json(), br#"{"error":{"message":"upstream says no"}}"#);

        // Bodies of other shapes become the OpenAI shape, their words kept.
        for (body, said) in [
            (
                serde_json::json!({"object": "error", "message": "too long", "param": "messages"}),
                "too long",
            ),
            (
                serde_json::json!({"error": "Input validation error", "error_type": "validation"}),
                "Input validation error",
            ),
            (
                serde_json::json!({"detail": [{"loc": ["body"], "msg": "bad"}]}),
                "\"msg\":\"bad\"",
            ),
        ] {
            let mut e = four.clone();
            e.upstream_body = Some(body.clone());
            let api = ApiError::from(e);
            assert_eq!(api.status, 422);
            let v: Value = serde_json::from_slice(&api.to_json()).unwrap();
            let msg = v["error"]["message"].as_str().unwrap();
            assert!(msg.starts_with("b: m: ") && msg.contains(said), "{v}");
            assert_eq!(v["error"]["code"], "upstream_rejected", "{v}");
            assert_eq!(
                v["error"]["param"],
                body.get("param").cloned().unwrap_or(Value::Null),
                "{v}"
            );
        }
    }
}
