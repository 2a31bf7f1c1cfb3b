//! `scoring::Scorer::score` on arbitrary UTF-8 text split into one to three
//! messages (at `\x1f`, the unit separator; roles vary with the lengths).
//!
//! Checked: no panic; both scores are finite and within 0..=1; every entity
//! names a message that exists, its byte span lies on character boundaries
//! inside that message with start < end, and its character span is the same
//! span counted in characters; entities come sorted by message then start,
//! never overlapping (what redaction relies on to replace them).
#![no_main]

use std::sync::LazyLock;

use api::Role;
use libfuzzer_sys::fuzz_target;
use scoring::{RequestShape, Scorer, Turn};

/// Compiling the lexicons is the expensive part: once per process.
static SCORER: LazyLock<Scorer> = LazyLock::new(Scorer::new);

const ROLES: [Role; 4] = [Role::User, Role::Assistant, Role::System, Role::Tool];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let turns: Vec<Turn<'_>> = text
        .splitn(3, '\x1f')
        .map(|t| Turn {
            role: ROLES[t.len() % ROLES.len()],
            text: t,
        })
        .collect();
    let shape = RequestShape {
        max_tokens: (text.len() % 3 == 0).then_some(text.len() as u32),
        has_tools: text.len() % 5 == 0,
        has_schema: text.len() % 7 == 0,
    };
    let scores = SCORER.score(&turns, shape);
    assert!(
        (0.0..=1.0).contains(&scores.complexity),
        "complexity {}",
        scores.complexity
    );
    assert!((0.0..=1.0).contains(&scores.privacy), "privacy {}", scores.privacy);
    let mut last: Option<(usize, usize)> = None;
    for e in &scores.entities {
        let msg = turns
            .get(e.message)
            .unwrap_or_else(|| panic!("{e:?}: no such message"))
            .text;
        assert!(
            e.byte_start < e.byte_end && e.byte_end <= msg.len(),
            "{e:?} in {} bytes",
            msg.len()
        );
        assert!(
            msg.is_char_boundary(e.byte_start) && msg.is_char_boundary(e.byte_end),
            "{e:?} splits a character"
        );
        assert!(e.start < e.end, "{e:?}");
        assert_eq!(e.start, msg[..e.byte_start].chars().count(), "{e:?}: char start");
        assert_eq!(e.end, msg[..e.byte_end].chars().count(), "{e:?}: char end");
        if let Some((m, end)) = last {
            assert!(
                e.message > m || (e.message == m && e.byte_start >= end),
                "{e:?} is out of order or overlaps the one before"
            );
        }
        last = Some((e.message, e.byte_end));
    }
});
