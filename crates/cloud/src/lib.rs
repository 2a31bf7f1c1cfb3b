//! The cloud backend: OpenAI-compatible HTTPS endpoints through reqwest and rustls.
