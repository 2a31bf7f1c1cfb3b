//! The crate's error type (starting a server can fail) and the one place an
//! HTTP error becomes an OpenAI-shaped response.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

/// Why a mock server could not start.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("mock config `{field}`: {message}")]
    Config { field: &'static str, message: String },
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("generating the certificate: {0}")]
    CertGen(#[from] rcgen::Error),
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("reading {path}: {message}")]
    Pem { path: String, message: String },
}

/// An error as an OpenAI endpoint returns it:
/// `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone)]
pub(crate) struct HttpError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds for a `retry-after` header.
    pub retry_after: Option<u64>,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> Self {
        HttpError {
            param: param.map(String::from),
            ..Self::new(StatusCode::BAD_REQUEST, message)
        }
    }

    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// OpenAI's `type` for a status.
    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        }
    }

    pub fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {
            "message": self.message,
            "type": self.kind(),
            "param": self.param,
            "code": self.code,
        }});
        let mut resp = Response::new(Body::from(body.to_string()));
        *resp.status_mut() = self.status;
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
