//! The tandem binary: HTTP API, config, wiring of backends and policy.
