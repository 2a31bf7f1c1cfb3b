//! Per-request signals from the text: complexity and privacy (entities). Pure: no IO.
