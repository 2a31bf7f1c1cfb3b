//! Redact-then-cloud: when the routing decision lets the cloud see a request
//! only with its sensitive values hidden, [`redact`] replaces each entity
//! value by a typed placeholder (`[EMAIL_1]`, `[PERSON_2]`) before the request
//! leaves the device, and [`Restorer`] / [`JsonRestorer`] / [`EventRestorer`]
//! put the values back into the answer as it streams.
//!
//! Entity spans come from the privacy scanner (the `scoring` crate) as
//! [`Span`]s; this crate does not look for entities itself, it only makes
//! sure that every value the scanner found, wherever else it occurs in the
//! conversation, is hidden.
//!
//! Architecture invariant: no IO, no clock, no global state; the same
//! conversation always gives the same placeholders, so a conversation that
//! grows turn by turn (each request resends the whole history) keeps the
//! numbers it had.
//!
//! Privacy invariant: a [`PlaceholderMap`] holds the original values; its
//! `Debug` shows placeholders only, and nothing here logs.

mod events;
mod map;
mod redact;
mod restore;

pub use events::{EventRestorer, restore_completion};
pub use map::{PlaceholderMap, Span};
pub use redact::{Redaction, redact};
pub use restore::{JsonRestorer, Restorer, restore_all, restore_json_all};
