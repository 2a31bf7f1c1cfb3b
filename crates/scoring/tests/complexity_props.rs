//! Property tests of complexity scoring: whatever the conversation and the
//! request shape, the score is finite and within [0, 1], and the demands
//! that make a request harder never lower it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use api::Role;
use proptest::prelude::*;
use scoring::complexity::ComplexityScorer;
use scoring::{RequestShape, Turn};

fn role(i: u8) -> Role {
    match i % 4 {
        0 => Role::System,
        1 => Role::User,
        2 => Role::Assistant,
        _ => Role::Tool,
    }
}

proptest! {
    #[test]
    fn score_is_finite_and_bounded(
        texts in prop::collection::vec((any::<u8>(), ".{0,400}"), 0..6),
        max_tokens in prop::option::of(any::<u32>()),
        has_tools in any::<bool>(),
        has_schema in any::<bool>(),
    ) {
        let scorer = ComplexityScorer::new();
        let turns: Vec<Turn<'_>> = texts.iter().map(|(r, t)| Turn { role: role(*r), text: t }).collect();
        let s = scorer.score(&turns, RequestShape { max_tokens, has_tools, has_schema });
        prop_assert!(s.is_finite() && (0.0..=1.0).contains(&s), "score {s}");
    }

    #[test]
    fn demands_never_lower_the_score(text in "[ -~\u{4e00}-\u{4e20}]{0,300}", max_tokens in 1u32..100_000) {
        let scorer = ComplexityScorer::new();
        let turns = [Turn { role: Role::User, text: &text }];
        let plain = scorer.score(&turns, RequestShape::default());
        let tools = scorer.score(&turns, RequestShape { has_tools: true, ..Default::default() });
        let schema = scorer.score(&turns, RequestShape { has_schema: true, ..Default::default() });
        let long = scorer.score(&turns, RequestShape { max_tokens: Some(max_tokens), ..Default::default() });
        let longer = scorer.score(&turns, RequestShape { max_tokens: Some(max_tokens.saturating_mul(2)), ..Default::default() });
        prop_assert!(tools >= plain && schema >= plain && long >= plain && longer >= long);
    }
}
