//! Complexity: the likelihood, 0..1, that a small on-device model fails the request.

use crate::{RequestShape, Turn};

pub struct ComplexityScorer {}

impl ComplexityScorer {
    pub fn new() -> Self {
        ComplexityScorer {}
    }

    pub fn score(&self, _turns: &[Turn<'_>], _shape: RequestShape) -> f32 {
        0.0
    }
}

impl Default for ComplexityScorer {
    fn default() -> Self {
        Self::new()
    }
}

/// A cheap token estimate: about four bytes per token for Latin text, one
/// token per CJK character.
pub fn estimate_tokens(turns: &[Turn<'_>]) -> u32 {
    let mut n = 0u32;
    for t in turns {
        n = n.saturating_add(4);
        let mut latin = 0u32;
        for c in t.text.chars() {
            if (c as u32) >= 0x2E80 {
                n = n.saturating_add(1);
            } else {
                latin += 1;
            }
        }
        n = n.saturating_add(latin.div_ceil(4));
    }
    n
}
