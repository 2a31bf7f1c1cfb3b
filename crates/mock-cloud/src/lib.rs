//! An OpenAI-compatible mock server with TLS, fault injection and a request record.
