//! `api::ChatRequest::from_slice` on arbitrary bytes, as a request body.
//!
//! A body that fails is a 400 in OpenAI's shape naming no impossible field;
//! a body that parses, serialised (what the cloud receives) and parsed
//! again, gives an equal request: nothing the app sent is lost or changed on
//! the way through Tandem.
#![no_main]

use api::ChatRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let req = match ChatRequest::from_slice(body) {
        Ok(req) => req,
        Err(e) => {
            assert_eq!(e.status, 400);
            assert_eq!(e.kind, "invalid_request_error");
            // The rendered error is JSON an app can read.
            let v: serde_json::Value = serde_json::from_slice(&e.to_json()).expect("error JSON");
            assert!(v["error"]["message"].is_string());
            return;
        }
    };
    let wire = serde_json::to_vec(&req).expect("a parsed request serialises");
    let again = match ChatRequest::from_slice(&wire) {
        Ok(r) => r,
        Err(e) => panic!("re-parse failed: {e}\n{}", String::from_utf8_lossy(&wire)),
    };
    assert_eq!(req, again, "{}", String::from_utf8_lossy(&wire));
    // Whatever scoring reads must be computable without a panic.
    for (_, text) in req.texts() {
        std::hint::black_box(text);
    }
    let _ = (req.max_tokens(), req.include_usage(), req.has_tools());
});
