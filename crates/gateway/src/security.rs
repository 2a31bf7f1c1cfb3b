//! Who may talk to the daemon: the `Host` check, the optional client token,
//! CORS and the body limits.
//!
//! A web page the user visits can make the browser send requests to
//! `127.0.0.1` under the page's own domain (DNS rebinding); such requests
//! carry that domain in `Host`, so only loopback names and hosts the operator
//! listed are accepted.

use std::time::Duration;

use api::ApiError;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub struct Security {
    /// Extra `Host` names accepted besides loopback ones (lowercase, no port).
    pub allowed_hosts: Vec<String>,
    /// When set, every request but probes must carry `Authorization: Bearer <token>`.
    pub client_token: Option<String>,
    pub max_body_bytes: usize,
    /// A body that takes longer than this to arrive is refused (slow drip).
    pub body_timeout: Duration,
    /// Origins allowed by CORS; empty means no CORS headers at all.
    pub cors_origins: Vec<String>,
}

impl Security {
    pub fn check_host(&self, req: &Request) -> Result<(), ApiError> {
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let host = match (hosts.next(), hosts.next()) {
            // Which one counts would be a guess (RFC 9112 section 3.2: a 400).
            (Some(_), Some(_)) => return Err(bad_host("the request has more than one Host header")),
            (Some(h), None) => h.to_str().map_err(|_| bad_host("the Host header is not valid text"))?,
            // HTTP/2 carries the host in the URI's authority instead.
            (None, _) => req
                .uri()
                .authority()
                .map(|a| a.as_str())
                .ok_or_else(|| bad_host("the request has no Host header"))?,
        };
        let name = host_name(host);
        if is_loopback_name(&name) || self.allowed_hosts.contains(&name) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                format!("Host {name:?} is not allowed; add it to server.allowed_hosts to accept it"),
                "host_not_allowed",
            ))
        }
    }

    pub fn check_token(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.client_token else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            Some(g) if constant_time_eq(g.as_bytes(), expected.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::unauthorized("the bearer token is not valid")),
            None => Err(ApiError::unauthorized(
                "this daemon requires `Authorization: Bearer <token>`",
            )),
        }
    }

    pub fn cors_layer(&self) -> Option<CorsLayer> {
        if self.cors_origins.is_empty() {
            return None;
        }
        let origins: Vec<HeaderValue> = self
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::AUTHORIZATION,
                    header::HeaderName::from_static("x-tandem-privacy"),
                    header::HeaderName::from_static("x-tandem-route"),
                ])
                .expose_headers([
                    header::HeaderName::from_static("x-tandem-route"),
                    header::HeaderName::from_static("x-tandem-rule"),
                ]),
        )
    }
}

fn bad_host(msg: &str) -> ApiError {
    ApiError::invalid_request(msg, None)
}

/// The host without port or brackets, lowercase.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if host.matches(':').count() > 1 {
        host // a bare IPv6 address
    } else {
        host.split(':').next().unwrap_or("")
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn is_loopback_name(name: &str) -> bool {
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for (h, ok) in [
            ("localhost:8080", true),
            ("127.0.0.1:1", true),
            ("127.8.9.1", true),
            ("[::1]:8080", true),
            ("::1", true),
            ("LOCALHOST.", true),
            ("app.localhost", true),
            ("evil.example.com", false),
            ("127.0.0.1.nip.io", false),
            ("localhost.evil.com", false),
            ("10.0.0.1", false),
            ("", false),
        ] {
            assert_eq!(is_loopback_name(&host_name(h)), ok, "{h}");
        }
    }
}
