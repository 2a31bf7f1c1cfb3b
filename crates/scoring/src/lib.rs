//! Per-request signals computed from the text alone: `complexity` (how likely
//! a small model fails the request) and `privacy` (how sensitive it is, with
//! the entities found).
//!
//! Architecture invariant: no IO, no clock, no global state beyond lexicons
//! and patterns compiled once in [`Scorer::new`]. Scoring a 1 KB prompt takes
//! microseconds.

pub mod complexity;
pub mod privacy;

use api::Role;

/// One message of the conversation, as scoring sees it.
#[derive(Debug, Clone, Copy)]
pub struct Turn<'a> {
    pub role: Role,
    pub text: &'a str,
}

/// What scoring reads besides the text.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestShape {
    /// `max_tokens` / `max_completion_tokens` as requested.
    pub max_tokens: Option<u32>,
    /// Tools were offered to the model.
    pub has_tools: bool,
    /// A JSON schema or JSON mode was requested (`response_format`).
    pub has_schema: bool,
}

/// Both scores of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub complexity: f32,
    pub privacy: f32,
    pub entities: Vec<privacy::Entity>,
    /// A cheap estimate of the prompt's length in tokens.
    pub est_prompt_tokens: u32,
}

/// Patterns and lexicons, compiled once and shared by every request.
pub struct Scorer {
    complexity: complexity::ComplexityScorer,
    privacy: privacy::PrivacyScanner,
}

impl Scorer {
    pub fn new() -> Self {
        Scorer {
            complexity: complexity::ComplexityScorer::new(),
            privacy: privacy::PrivacyScanner::new(),
        }
    }

    pub fn score(&self, turns: &[Turn<'_>], shape: RequestShape) -> Scores {
        self.score_with_side(turns, &[], shape)
    }

    /// [`Self::score`], with the request's other strings (`side`: a name,
    /// earlier tool-call arguments, `user`, `metadata`) scanned for privacy
    /// too; they do not count for complexity. An entity found in `side[k]`
    /// has `message == turns.len() + k`.
    pub fn score_with_side(&self, turns: &[Turn<'_>], side: &[&str], shape: RequestShape) -> Scores {
        let privacy = self.privacy.scan_with_side(turns, side);
        // Complexity counts the tokens in its own pass: no second pass.
        let (complexity, est_prompt_tokens) = self.complexity.score_with_tokens(turns, shape);
        Scores {
            complexity,
            privacy: privacy.score,
            entities: privacy.entities,
            est_prompt_tokens,
        }
    }

    pub fn complexity(&self) -> &complexity::ComplexityScorer {
        &self.complexity
    }

    pub fn privacy(&self) -> &privacy::PrivacyScanner {
        &self.privacy
    }
}

impl Default for Scorer {
    fn default() -> Self {
        Self::new()
    }
}
