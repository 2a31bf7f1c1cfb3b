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
use axum::http::{HeaderMap, HeaderValue, Method, Version, header};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

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
            // HTTP/2 carries the host in the URI's authority instead; an
            // HTTP/1 request must name it in Host (RFC 9112 section 3.2).
            (None, _) if req.version() >= Version::HTTP_2 => req
                .uri()
                .authority()
                .map(|a| a.as_str())
                .ok_or_else(|| bad_host("the request has no :authority"))?,
            (None, _) => return Err(bad_host("the request has no Host header")),
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
            .and_then(|v| v.trim_start().split_once(' '))
            // The scheme's name is case-insensitive (RFC 9110 section 11.1).
            .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then_some(token))
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
        // Checked at load by `check_origin`: none is dropped here.
        let origins: Vec<HeaderValue> = self
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                // The headers a preflight asks for, whatever they are: the
                // SDKs send their own (openai-node's `x-stainless-*`), apps
                // the `x-tandem-*` hints. The origin list is the gate.
                .allow_headers(AllowHeaders::mirror_request())
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

/// Why a configured CORS origin cannot be used, if it cannot: an origin is
/// `scheme://host[:port]`, and `*` would let every web page the user
/// visits read the daemon's answers.
pub(crate) fn check_origin(origin: &str) -> Result<(), String> {
    if origin.trim() == "*" {
        return Err("\"*\" would let every web page the user visits use the daemon; list the origins".into());
    }
    let uri: axum::http::Uri = origin
        .parse()
        .map_err(|_| format!("{origin:?} is not an origin (scheme://host[:port])"))?;
    let plain = uri.path_and_query().is_none_or(|p| p.as_str() == "/") && !origin.ends_with('/');
    if uri.scheme().is_none() || uri.authority().is_none() || !plain || HeaderValue::from_str(origin).is_err() {
        return Err(format!("{origin:?} is not an origin (scheme://host[:port], no path)"));
    }
    Ok(())
}

/// The host without port or brackets, lowercase, without a trailing dot.
pub(crate) fn host_name(host: &str) -> String {
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

    fn security(token: Option<&str>, allowed: &[&str]) -> Security {
        Security {
            allowed_hosts: allowed.iter().map(|h| host_name(h)).collect(),
            client_token: token.map(str::to_owned),
            max_body_bytes: 1 << 20,
            body_timeout: Duration::from_secs(1),
            cors_origins: vec![],
        }
    }

    fn request(version: Version, uri: &str, host: Option<&str>) -> Request {
        let mut b = Request::builder().version(version).uri(uri);
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn an_http1_request_must_name_its_host_in_the_header() {
        let s = security(None, &[]);
        let v11 = Version::HTTP_11;
        assert!(
            s.check_host(&request(v11, "/v1/models", Some("127.0.0.1:8080")))
                .is_ok()
        );
        // An absolute URI does not stand in for Host in HTTP/1.
        let e = s
            .check_host(&request(v11, "http://127.0.0.1/v1/models", None))
            .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(s.check_host(&request(Version::HTTP_10, "/v1/models", None)).is_err());
        // HTTP/2 names it in the :authority.
        assert!(
            s.check_host(&request(Version::HTTP_2, "http://[::1]:8080/v1/models", None))
                .is_ok()
        );
        let e = s
            .check_host(&request(Version::HTTP_2, "http://evil.example/v1/models", None))
            .unwrap_err();
        assert_eq!(e.status, 403);
    }

    #[test]
    fn allowed_hosts_match_however_the_host_header_writes_them() {
        let s = security(None, &["Tandem.Internal.", "[fd00::1]:8080", "box.lan:9000"]);
        for h in [
            "tandem.internal",
            "TANDEM.internal:8080",
            "[fd00::1]:1234",
            "fd00::1",
            "box.lan",
        ] {
            assert!(s.check_host(&request(Version::HTTP_11, "/", Some(h))).is_ok(), "{h}");
        }
        assert!(
            s.check_host(&request(Version::HTTP_11, "/", Some("other.lan")))
                .is_err()
        );
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let s = security(Some("s3cret"), &[]);
        let check = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            s.check_token(&h).is_ok()
        };
        assert!(check("Bearer s3cret"));
        assert!(check("bearer s3cret"));
        assert!(check("BEARER  s3cret "));
        assert!(!check("Bearer s3cre"));
        assert!(!check("Basic s3cret"));
        assert!(!check("s3cret"));
        assert!(s.check_token(&HeaderMap::new()).is_err());
    }

    #[test]
    fn cors_origins_are_origins() {
        for ok in ["http://localhost:3000", "https://app.example.com", "tauri://localhost"] {
            assert!(check_origin(ok).is_ok(), "{ok}");
        }
        for bad in [
            "*",
            " * ",
            "localhost:3000",
            "https://app.example.com/",
            "https://a.com/path",
            "not an origin",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }
}
