//! Complexity: the likelihood, 0..1, that a small on-device model fails the request.
//!
//! # What the score means
//!
//! `complexity` is the estimated probability that a 1B–7B on-device model
//! gives a wrong or unusable answer. It is a logistic model over features of
//! the whole conversation (every turn, plus the request shape):
//!
//! - length (a token estimate), numbers, sentences, lines, maths symbols;
//! - keyword families in English, Chinese and Indonesian (`lexicon.rs`):
//!   maths, science, law, logic, code, reasoning, long-form writing,
//!   constraints and format demands, extraction, expert domains, requests to
//!   produce something, humanities, everyday chit-chat;
//! - conversation depth (user turns), requested `max_tokens` beyond 512,
//!   tools offered, JSON schema / JSON mode requested.
//!
//! A request is first put in one of three [`Kind`]s by its shape:
//! *arithmetic* (a word problem: two or more quantities and a question),
//! *choice* (a multiple-choice question) or *open* (everything else). Each
//! kind has its own base level and weights, since what makes each hard
//! differs (length and quantities in word problems; the domain and the need to
//! compute in multiple choice).
//!
//! Reading the scale, for policy thresholds:
//!
//! | score | typical requests |
//! |---|---|
//! | < 0.25 | greetings, thanks, unit conversions, short translations, reminders, one-line facts |
//! | 0.3–0.5 | plain explanations, short emails, easy knowledge questions, short word problems |
//! | 0.5–0.6 | multi-step word problems, harder quizzes, ordinary writing tasks |
//! | ≥ 0.6 | code, long or constrained writing, analysis, proofs, expert domains, tools, long conversations |
//!
//! The default policy's `complexity >= 0.6` thus sends a request to the cloud
//! when the device model is more likely to fail it than not, by a margin.
//!
//! # How it was calibrated
//!
//! Learned weights (`complexity/weights.rs`) come from
//! `examples/complexity_fit.rs`: a logistic regression of `needs_strong` on
//! the features, over the routing sets that have both classes (GSM8K with
//! GPT-3 6B and with Mixtral-8x7B as the small model, MMLU with Mixtral),
//! with one intercept per set (so the weights learn what makes a prompt
//! harder *within* a set), equal weight per set and an L2 penalty. The cues
//! of open requests (code, writing, chit-chat …) weigh on open requests only;
//! a request with code is never a word problem. The
//! device's base level sits halfway, in logits, between the two small models
//! measured on the same GSM8K problems (GPT-3 6B fails 78% of them, Mixtral
//! 35%), i.e. about a modern 1–3B model. Open requests have no labelled data:
//! their base level and the weights of code, writing, constraints, tools,
//! schema, `max_tokens`, depth and chit-chat are set by hand ([`Weighting`])
//! so that everyday one-liners land near 0.1 and hard real-user prompts
//! (arena-hard) around 0.6.
//!
//! Figures on the public sample of the calibration data (`complexity_eval`,
//! `complexity_fit`; a larger hidden part of each set is used to check):
//!
//! | set | AUROC complexity | 5-fold CV | prompt length |
//! |---|---|---|---|
//! | gsm8k-gpt3 (371) | 0.676 | 0.668 | 0.665 |
//! | gsm8k-mixtral (367) | 0.662 | 0.652 | 0.638 |
//! | mmlu-mixtral (1033) | 0.710 | 0.692 | 0.482 |
//! | macro | 0.682 | 0.671 | 0.595 |
//!
//! RouteLLM CPT over the 1,771 labelled rows: 45.9% of requests to the cloud
//! recover 50% of the small-to-large quality gap, 68.2% recover 80%, 78.6%
//! recover 95% (prompt length: 48.2%, 74.2%, 88.2%). The 33 everyday prompts
//! of `tests/complexity_everyday.txt` score 0.13 on average (max 0.23);
//! arena-hard scores 0.60 on average (lower quartile 0.45, median 0.60).
//! Hashed word unigrams and bigrams were tried for multiple choice: at most
//! +0.01 cross-validated, and that gain came and went with the number of hash
//! buckets (noise), so they are not used.
//! Within GSM8K the text says little about difficulty beyond its length:
//! expect AUROCs in the 0.65–0.70 range there, not more. The labels
//! themselves say why: on the 367 GSM8K problems both small models answered,
//! whether Mixtral failed a problem predicts whether GPT-3 6B failed it with
//! an AUROC of only 0.573 (0.554 the other way round) — which problems a
//! model misses is mostly that model's own noise. Re-examined with 10–20
//! fold seeds and nested feature selection: the largest number's digit
//! count plus "a number inside the question sentence" raise the macro CV
//! AUROC to 0.684 but push hand-written hard word problems under the 0.6
//! threshold, so they are not used; an MMLU subject oracle built from the
//! training folds reaches 0.701 alone and 0.714 added to these features;
//! gradient boosting and L1/L2 logistic models over ~50 features did no
//! better than this model.
//!
//! # Cost
//!
//! One pass over the bytes counts everything and looks each word up once in
//! a small table (`words.rs`); a small Aho-Corasick automaton runs only over
//! runs of non-ASCII text. Nothing is allocated per request.

mod lexicon;
mod weights;
mod words;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use api::Role;

use crate::{RequestShape, Turn};
use lexicon::{FAMILIES, Family, N_FAMILIES};
use words::WordIndex;

/// How many features the score reads.
pub const N_FEATURES: usize = 29;

/// How a feature's weight is set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Weighting {
    /// Set by hand, in logits per unit: the calibration data has no or too
    /// little variation to teach it (short requests, depth, long outputs).
    Hand(f32),
    /// Learned by `examples/complexity_fit.rs` (stored in
    /// `complexity/weights.rs`), separately for arithmetic word problems and
    /// for multiple-choice questions, since what makes each hard differs:
    /// length and quantities in word problems, the domain and the need to
    /// compute in multiple choice. `false` keeps the weight at zero for that
    /// kind. Open requests have no labelled data, so `open` is a hand-set
    /// weight for them.
    Learned { arithmetic: bool, choice: bool, open: f32 },
}

/// One feature of the vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureSpec {
    pub name: &'static str,
    pub weighting: Weighting,
}

/// A cue of open requests (code, writing, chit-chat …), weighted by hand
/// there. Word problems and multiple-choice questions keep only what the fit
/// learned: on the labelled sets these cues fire on incidental words ("a
/// program", "write down") and only add noise (cross-validated AUROC drops
/// when they enter as a fixed offset or as learned columns).
const fn open_only(name: &'static str, open: f32) -> FeatureSpec {
    learned(name, false, false, open)
}

const fn learned(name: &'static str, arithmetic: bool, choice: bool, open: f32) -> FeatureSpec {
    FeatureSpec {
        name,
        weighting: Weighting::Learned {
            arithmetic,
            choice,
            open,
        },
    }
}

/// The kind of request, found from its shape; each kind has its own base
/// level and learned weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Anything else: chat, writing, code, questions without quantities.
    Open,
    /// A word problem: two or more quantities and a question or a maths
    /// word, not multiple choice.
    Arithmetic,
    /// A multiple-choice question: three or more lines that start with an
    /// option letter (`A.`, `b)`, `(C)`).
    Choice,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Open, Kind::Arithmetic, Kind::Choice];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Open => "open",
            Kind::Arithmetic => "arithmetic",
            Kind::Choice => "choice",
        }
    }
}

const fn hand(name: &'static str, w: f32) -> FeatureSpec {
    FeatureSpec {
        name,
        weighting: Weighting::Hand(w),
    }
}

// Feature indices, in the order of `FEATURES`.
const F_TOKENS: usize = 0;
const F_LONGEST_LINE: usize = 1;
const F_NUMBERS: usize = 2;
const F_NUM_DENSITY: usize = 3;
const F_NUMBER_WORD: usize = 4;
const F_SENTENCES: usize = 5;
const F_QUESTIONS: usize = 6;
const F_WORD_LEN: usize = 7;
const F_SYMBOLS: usize = 8;
const F_SHORT_LINES: usize = 9;
const F_MATHS: usize = 10;
const F_SCIENCE: usize = 11;
const F_LAW: usize = 12;
const F_LOGIC: usize = 13;
const F_HUMANITIES: usize = 14;
const F_CODE: usize = 15;
const F_REASONING: usize = 16;
const F_LONG_FORM: usize = 17;
const F_CONSTRAINT: usize = 18;
const F_EXTRACTION: usize = 19;
const F_PRODUCE: usize = 20;
const F_EXPERT: usize = 21;
const F_EVERYDAY: usize = 22;
const F_SHORT: usize = 23;
const F_DEPTH: usize = 24;
const F_OUTPUT: usize = 25;
const F_LONG_CONTEXT: usize = 26;
const F_OPTION_NUMBERS: usize = 27;
const F_OPTION_LEN: usize = 28;

/// Every feature, in vector order. Counts enter as `ln(1 + n)`. For learned
/// features, `learned(name, arithmetic, choice, open)` says for which kinds
/// the fit learns a weight and gives the hand-set weight for open requests;
/// `open_only` features weigh on open requests only; `hand` ones on every
/// kind.
pub const FEATURES: [FeatureSpec; N_FEATURES] = [
    learned("ln_tokens", true, true, 0.3),
    learned("ln_longest_line", false, true, 0.0),
    learned("ln_numbers", true, true, 0.1),
    learned("number_density", false, true, 0.0),
    learned("kw_number_word", true, false, 0.0),
    learned("ln_sentences", false, true, 0.0),
    learned("ln_questions", false, true, 0.0),
    learned("mean_word_len", false, true, 0.0),
    learned("ln_math_symbols", false, true, 0.15),
    learned("ln_short_lines", false, true, 0.0),
    learned("kw_maths", true, true, 0.5),
    learned("kw_science", false, true, 0.3),
    learned("kw_law", false, true, 0.3),
    learned("kw_logic", false, true, 0.4),
    learned("kw_humanities", false, true, -0.2),
    open_only("kw_code", 0.8),
    open_only("kw_reasoning", 0.45),
    open_only("kw_long_form", 0.5),
    open_only("kw_constraint", 0.3),
    open_only("kw_extraction", 0.2),
    open_only("kw_produce", 0.4),
    open_only("kw_expert", 0.4),
    open_only("kw_everyday", -0.8),
    hand("short_request", -0.8),
    hand("ln_user_turns", 0.5),
    hand("output_demand", 0.4),
    hand("long_context", 0.3),
    learned("ln_option_numbers", false, true, 0.0),
    learned("ln_option_len", false, true, 0.0),
];

/// Base level (logit) of an open request with no cue at all: about 0.25. Open
/// requests have no labelled data; their level and the hand-set weights were
/// chosen so that everyday one-liners land near 0.1 and code, analysis and
/// long constrained writing reach 0.6 and above.
const OPEN_BIAS: f32 = -1.8;

/// Tools and JSON schema are binary demands added on top of the features.
const W_TOOLS: f32 = 0.9;
const W_SCHEMA: f32 = 0.6;

/// The feature vector of one request, in the order of [`FEATURES`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features {
    pub values: [f32; N_FEATURES],
    /// Tools were offered (binary, weighted apart from the vector).
    pub tools: bool,
    /// A JSON schema or JSON mode was requested.
    pub schema: bool,
    /// Which base level and learned weights apply.
    pub kind: Kind,
}

/// Keyword tables compiled once; scoring itself allocates nothing.
pub struct ComplexityScorer {
    /// Patterns that start with an ASCII letter, looked up word by word.
    words: WordIndex,
    /// The non-ASCII patterns (Chinese, logic symbols): a small automaton.
    ac: Option<AhoCorasick>,
    /// The family of each automaton pattern, by pattern id.
    ac_family: Vec<u8>,
    /// Base level and weight of every feature, per [`Kind`] (in the order of
    /// `Kind::ALL`): hand-set and learned weights merged once.
    bias: [f32; 3],
    weights: [[f32; N_FEATURES]; 3],
}

impl ComplexityScorer {
    pub fn new() -> Self {
        // Patterns that start with an ASCII letter go to the word index; the
        // rest (all of them non-ASCII throughout, a unit test checks) to the
        // automaton.
        let mut patterns: Vec<&str> = Vec::new();
        let mut ac_family = Vec::new();
        for (family, list) in FAMILIES {
            for &p in list {
                if !words::is_word_pattern(p) {
                    patterns.push(p);
                    ac_family.push(family as u8);
                }
            }
        }
        // The lists are constants checked by a unit test; should the build
        // still fail (it cannot for these sizes), scoring degrades to the
        // other features instead of panicking.
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&patterns)
            .ok();
        let words = WordIndex::new(
            FAMILIES
                .iter()
                .flat_map(|(f, list)| list.iter().map(move |p| (*p, *f as u8))),
        );
        ComplexityScorer {
            words,
            ac,
            bias: [OPEN_BIAS, weights::ARITHMETIC_BIAS, weights::CHOICE_BIAS],
            weights: [
                merged_weights(Kind::Open, &[]),
                merged_weights(Kind::Arithmetic, weights::ARITHMETIC),
                merged_weights(Kind::Choice, weights::CHOICE),
            ],
            ac_family,
        }
    }

    /// The complexity of a request: the estimated probability that a small
    /// on-device model fails it. Always finite and within `[0, 1]`.
    pub fn score(&self, turns: &[Turn<'_>], shape: RequestShape) -> f32 {
        self.score_features(&self.measure(turns, shape).0)
    }

    /// The logit behind [`Self::score`]: the weighted sum of the features.
    pub fn logit(&self, f: &Features) -> f32 {
        let k = f.kind as usize;
        let mut z = self.bias[k];
        for (x, w) in f.values.iter().zip(&self.weights[k]) {
            z += w * x;
        }
        if f.tools {
            z += W_TOOLS;
        }
        if f.schema {
            z += W_SCHEMA;
        }
        z
    }

    /// Turns features into the score.
    pub fn score_features(&self, f: &Features) -> f32 {
        let z = self.logit(f);
        if !z.is_finite() {
            return if z == f32::INFINITY { 1.0 } else { 0.0 };
        }
        let s = 1.0 / (1.0 + (-z).exp());
        s.clamp(0.0, 1.0)
    }

    /// The score and a cheap token estimate (four Latin characters per
    /// token, one per CJK character at U+2E80 and above, four per turn), from the
    /// same pass over the text.
    pub fn score_with_tokens(&self, turns: &[Turn<'_>], shape: RequestShape) -> (f32, u32) {
        let (f, tokens) = self.measure(turns, shape);
        (self.score_features(&f), tokens)
    }

    /// Measures the features of a conversation.
    pub fn features(&self, turns: &[Turn<'_>], shape: RequestShape) -> Features {
        self.measure(turns, shape).0
    }

    /// The features and the token estimate.
    fn measure(&self, turns: &[Turn<'_>], shape: RequestShape) -> (Features, u32) {
        let mut c = Counts::default();
        let mut user_turns = 0u32;
        for t in turns {
            if matches!(t.role, Role::User) {
                user_turns += 1;
            }
            c.non_ascii = false;
            scan_bytes(t.text.as_bytes(), &self.words, &mut c);
            if c.non_ascii {
                self.scan_non_ascii(t.text.as_bytes(), &mut c.families);
            }
        }
        let tokens = c.tokens as f32;
        let words = c.words as f32 + c.cjk as f32 / 1.5;
        let mut v = [0f32; N_FEATURES];
        v[F_TOKENS] = ln1p(tokens);
        v[F_NUMBERS] = ln1p(c.numbers as f32);
        v[F_NUM_DENSITY] = (10.0 * c.numbers as f32 / (words + 1.0)).min(5.0);
        v[F_SENTENCES] = ln1p(c.sentences as f32);
        v[F_WORD_LEN] = if c.words == 0 {
            4.5
        } else {
            (c.letters as f32 / c.words as f32).clamp(2.0, 10.0)
        };
        v[F_SYMBOLS] = ln1p(c.symbols as f32);
        v[F_QUESTIONS] = ln1p(c.questions as f32);
        let fam = |f: Family| ln1p(c.families[f as usize] as f32);
        v[F_NUMBER_WORD] = fam(Family::NumberWord);
        v[F_MATHS] = fam(Family::Maths);
        v[F_SCIENCE] = fam(Family::Science);
        v[F_LAW] = fam(Family::Law);
        v[F_LOGIC] = fam(Family::Logic);
        v[F_HUMANITIES] = fam(Family::Humanities);
        v[F_CODE] = ln1p(c.families[Family::Code as usize] as f32 + c.code_punct as f32 / 4.0);
        v[F_REASONING] = fam(Family::Reasoning);
        v[F_LONG_FORM] = fam(Family::LongForm);
        v[F_CONSTRAINT] = fam(Family::Constraint);
        v[F_EXTRACTION] = fam(Family::Extraction);
        v[F_EVERYDAY] = fam(Family::Everyday);
        v[F_PRODUCE] = fam(Family::Produce);
        v[F_EXPERT] = fam(Family::Expert);
        // A ramp from 1 (a few tokens) to 0 at 24 tokens: the short one-liners
        // a device model answers well.
        v[F_SHORT] = (1.0 - tokens / 24.0).max(0.0);
        v[F_DEPTH] = ln1p(user_turns.saturating_sub(1) as f32);
        v[F_LONGEST_LINE] = ln1p(c.longest_line as f32 / 4.0);
        v[F_SHORT_LINES] = ln1p(c.short_lines as f32);
        let quantities = c.numbers.saturating_add(c.families[Family::NumberWord as usize]);
        v[F_LONG_CONTEXT] = (tokens / 256.0).ln().max(0.0);
        v[F_OPTION_NUMBERS] = ln1p(c.option_numbers as f32);
        v[F_OPTION_LEN] = if c.option_lines == 0 {
            0.0
        } else {
            ln1p(c.option_bytes as f32 / c.option_lines as f32)
        };
        // Code is never a word problem: its quantities are sizes and indices,
        // and the open weights (code cues) must apply.
        let code = c.families[Family::Code as usize] > 0 || c.code_punct > 0;
        let kind = if c.option_lines >= 3 {
            Kind::Choice
        } else if quantities >= 2 && !code && (c.questions > 0 || c.families[Family::Maths as usize] > 0) {
            Kind::Arithmetic
        } else {
            Kind::Open
        };
        v[F_OUTPUT] = match shape.max_tokens {
            Some(m) if m > 512 => (m as f32 / 512.0).ln(),
            _ => 0.0,
        };
        let f = Features {
            values: v,
            tools: shape.has_tools,
            schema: shape.has_schema,
            kind,
        };
        (f, c.tokens)
    }

    /// Counts the non-ASCII patterns (Chinese, logic symbols) in the runs of
    /// non-ASCII bytes: none of them contains an ASCII byte, so ASCII text
    /// between the runs can be skipped.
    fn scan_non_ascii(&self, hay: &[u8], families: &mut [u32; N_FAMILIES]) {
        let Some(ac) = &self.ac else { return };
        let mut i = 0;
        while let Some(off) = hay.get(i..).and_then(|r| r.iter().position(|&b| b >= 0x80)) {
            let start = i + off;
            let len = hay[start..].iter().position(|&b| b < 0x80).unwrap_or(hay.len() - start);
            let end = start + len;
            for m in ac.find_iter(&hay[start..end]) {
                if let Some(&family) = self.ac_family.get(m.pattern().as_usize()) {
                    let f = &mut families[usize::from(family)];
                    *f = f.saturating_add(1);
                }
            }
            i = end;
        }
    }
}

impl Default for ComplexityScorer {
    fn default() -> Self {
        Self::new()
    }
}

/// The weight vector for one kind of request: hand-set weights from
/// [`FEATURES`], learned ones looked up by name in the generated table (a name
/// the table lacks weighs 0; a unit test checks both agree).
fn merged_weights(kind: Kind, learned: &[(&str, f32)]) -> [f32; N_FEATURES] {
    let mut w = [0f32; N_FEATURES];
    for (i, spec) in FEATURES.iter().enumerate() {
        w[i] = match spec.weighting {
            Weighting::Hand(h) => h,
            Weighting::Learned { open, .. } if kind == Kind::Open => open,
            Weighting::Learned { .. } => learned.iter().find(|(n, _)| *n == spec.name).map_or(0.0, |&(_, v)| v),
        };
    }
    w
}

/// `ln(1 + x)`. Most arguments are small counts: those come from a table
/// built on first use, since a libm call per feature would cost more than the
/// scan of a short prompt.
fn ln1p(x: f32) -> f32 {
    let x = x.max(0.0);
    if x < LN_TABLE as f32 && x.fract() == 0.0 {
        ln_table()[x as usize]
    } else {
        x.ln_1p()
    }
}

const LN_TABLE: usize = 256;

fn ln_table() -> &'static [f32; LN_TABLE] {
    static TABLE: std::sync::OnceLock<[f32; LN_TABLE]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|i| (i as f32).ln_1p()))
}

/// What one pass over the bytes counts.
#[derive(Debug, Default)]
struct Counts {
    numbers: u32,
    words: u32,
    letters: u32,
    sentences: u32,
    symbols: u32,
    questions: u32,
    code_punct: u32,
    cjk: u32,
    /// The token estimate (see [`ComplexityScorer::score_with_tokens`]), summed over turns.
    tokens: u32,
    /// Bytes of the longest line of any turn.
    longest_line: u32,
    /// Non-empty lines of at most `SHORT_LINE` bytes (answer options, list items, code).
    short_lines: u32,
    /// Lines that start like a multiple-choice option (`A.`, `b)`, `(C)`).
    option_lines: u32,
    /// Numbers within option lines (answers to compute rather than recall).
    option_numbers: u32,
    /// Bytes of all option lines.
    option_bytes: u32,
    /// The current turn has bytes outside ASCII (the automaton must run).
    non_ascii: bool,
    families: [u32; N_FAMILIES],
}

/// Lines up to this many bytes count as short.
const SHORT_LINE: usize = 24;

// Byte classes for the scan, looked up in one table instead of a chain of
// comparisons.
const C_OTHER: u8 = 0;
const C_DIGIT: u8 = 1;
const C_ALPHA: u8 = 2;
const C_STOP: u8 = 3; // . ! ?
const C_COMMA: u8 = 4;
const C_SYMBOL: u8 = 5; // = + * / ^ < > -
const C_CODE: u8 = 6; // { } ; ` : & |
const C_NEWLINE: u8 = 7;
const C_CONT: u8 = 8; // UTF-8 continuation byte
const C_LEAD_E2: u8 = 9; // U+2000..U+2FFF
const C_CJK: u8 = 10; // U+3000..U+9FFF
const C_LEAD_EF: u8 = 11; // U+F000..U+FFFF (full-width punctuation)
const C_WIDE: u8 = 12; // other leads of chars at U+A000 and above
const C_LEAD2: u8 = 13; // leads of two-byte chars (Latin with accents, Cyrillic, …)

const CLASS: [u8; 256] = {
    let mut t = [C_OTHER; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = match b {
            b'0'..=b'9' => C_DIGIT,
            b'a'..=b'z' | b'A'..=b'Z' => C_ALPHA,
            b'.' | b'!' | b'?' => C_STOP,
            b',' => C_COMMA,
            b'=' | b'+' | b'*' | b'/' | b'^' | b'<' | b'>' | b'-' => C_SYMBOL,
            b'{' | b'}' | b';' | b'`' | b':' | b'&' | b'|' => C_CODE,
            b'\n' => C_NEWLINE,
            0x80..=0xBF => C_CONT,
            0xC0..=0xDF => C_LEAD2,
            0xE2 => C_LEAD_E2,
            0xE3..=0xE9 => C_CJK,
            0xEF => C_LEAD_EF,
            0xE0 | 0xE1 | 0xEA..=0xFF => C_WIDE,
            _ => C_OTHER,
        };
        i += 1;
    }
    t
};

/// Counts numbers, words, sentences, symbols, lines and characters in one
/// pass over the bytes of one turn, and looks every word up in the index.
fn scan_bytes(b: &[u8], index: &WordIndex, c: &mut Counts) {
    let n = b.len();
    let mut i = 0;
    let mut line_start = 0usize;
    // Bytes that count as Latin text and as wide (CJK) characters, for the
    // token estimate.
    let mut latin = 0usize;
    let mut wide = 0u32;
    // Words before this offset belong to a phrase already matched.
    let mut skip_until = 0usize;
    // The current line is a multiple-choice option.
    let mut in_option = is_option_line(b);
    if in_option {
        c.option_lines += 1;
    }
    while i < n {
        let x = b[i];
        match CLASS[usize::from(x)] {
            C_ALPHA => {
                c.words += 1;
                // A word glued to a number ("10km") is no keyword.
                let glued = i > 0 && b[i - 1].is_ascii_digit();
                if i >= skip_until
                    && !glued
                    && let Some((family, end)) = index.match_at(b, i)
                {
                    let f = &mut c.families[usize::from(family)];
                    *f = f.saturating_add(1);
                    skip_until = end;
                }
                let start = i;
                while i < n && b[i].is_ascii_alphabetic() {
                    i += 1;
                }
                c.letters += (i - start) as u32;
                latin += i - start;
                continue;
            }
            C_DIGIT => {
                c.numbers += 1;
                if in_option {
                    c.option_numbers += 1;
                }
                // "1,234.5" is one number.
                let start = i;
                loop {
                    while i < n && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    if i + 1 < n && (b[i] == b'.' || b[i] == b',') && b[i + 1].is_ascii_digit() {
                        i += 1;
                    } else {
                        break;
                    }
                }
                latin += i - start;
                continue;
            }
            C_STOP => {
                if b.get(i + 1).is_none_or(u8::is_ascii_whitespace) {
                    c.sentences += 1;
                }
                if x == b'?' {
                    c.questions += 1;
                }
                if x == b'!' && b.get(i + 1) == Some(&b'=') {
                    c.code_punct += 1;
                }
                latin += 1;
            }
            C_SYMBOL => {
                c.symbols += 1;
                // `->`, `=>`, `==`: code.
                if matches!(x, b'-' | b'=') && matches!(b.get(i + 1), Some(b'>' | b'=')) {
                    c.code_punct += 1;
                }
                latin += 1;
            }
            C_CODE => {
                match x {
                    b'{' | b'}' | b';' => c.code_punct += 1,
                    // ``` opens or closes a code block; `::`, `&&`, `||`.
                    b'`' if b.get(i + 1) == Some(&b'`') && b.get(i + 2) == Some(&b'`') => {
                        c.code_punct += 4;
                        i += 2;
                        latin += 2;
                    }
                    b':' | b'&' | b'|' if b.get(i + 1) == Some(&x) => c.code_punct += 1,
                    _ => {}
                }
                latin += 1;
            }
            C_NEWLINE => {
                end_line(&b[line_start..i], in_option, c);
                line_start = i + 1;
                in_option = is_option_line(&b[line_start..]);
                if in_option {
                    c.option_lines += 1;
                }
                latin += 1;
            }
            C_CONT => c.non_ascii = true,
            C_LEAD2 => {
                c.non_ascii = true;
                latin += 1;
            }
            C_LEAD_E2 => {
                c.non_ascii = true;
                // Only U+2E80 and above (second byte ≥ 0xBA) is wide.
                if b.get(i + 1).is_some_and(|&y| y >= 0xBA) {
                    wide += 1;
                } else {
                    latin += 1;
                }
            }
            C_CJK => {
                c.non_ascii = true;
                wide += 1;
                c.cjk += 1;
                // 。 is E3 80 82.
                if x == 0xE3 && b.get(i + 1) == Some(&0x80) && b.get(i + 2) == Some(&0x82) {
                    c.sentences += 1;
                }
            }
            C_LEAD_EF => {
                c.non_ascii = true;
                wide += 1;
                // ！ EF BC 81, ？ EF BC 9F (full-width).
                if b.get(i + 1) == Some(&0xBC) {
                    match b.get(i + 2) {
                        Some(0x81) => c.sentences += 1,
                        Some(0x9F) => {
                            c.sentences += 1;
                            c.questions += 1;
                        }
                        _ => {}
                    }
                }
            }
            C_WIDE => {
                c.non_ascii = true;
                wide += 1;
            }
            _ => latin += 1,
        }
        i += 1;
    }
    end_line(&b[line_start.min(n)..], in_option, c);
    let latin = u32::try_from(latin).unwrap_or(u32::MAX);
    c.tokens = c
        .tokens
        .saturating_add(4)
        .saturating_add(wide)
        .saturating_add(latin.div_ceil(4));
}

/// Line statistics at the end of each line.
fn end_line(line: &[u8], option: bool, c: &mut Counts) {
    let len = u32::try_from(line.len()).unwrap_or(u32::MAX);
    c.longest_line = c.longest_line.max(len);
    if option {
        c.option_bytes = c.option_bytes.saturating_add(len);
    }
    if !line.is_empty() && line.len() <= SHORT_LINE && !line.iter().all(u8::is_ascii_whitespace) {
        c.short_lines += 1;
    }
}

/// Does this line start like a multiple-choice option: `A. `, `b) `, `(C) `?
fn is_option_line(line: &[u8]) -> bool {
    let rest = match line {
        [b'(', rest @ ..] => rest,
        _ => line,
    };
    matches!(rest, [l, b'.' | b')', b' ' | b'\t', ..] if matches!(l, b'A'..=b'E' | b'a'..=b'e'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const EVERYDAY: &str = include_str!("../tests/complexity_everyday.txt");
    const HARD: &str = include_str!("../tests/complexity_hard.txt");
    /// Everyday prompts stay below this; hard multi-step prompts exceed it.
    const EASY_MAX: f32 = 0.35;
    /// The default policy's cloud threshold; hard prompts reach it.
    const HARD_MIN: f32 = 0.6;

    fn lines(s: &str) -> Vec<&str> {
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    }

    fn user(text: &str) -> [Turn<'_>; 1] {
        [Turn { role: Role::User, text }]
    }

    fn score(s: &ComplexityScorer, text: &str) -> f32 {
        s.score(&user(text), RequestShape::default())
    }

    #[test]
    fn everyday_prompts_in_three_languages_score_low() {
        let s = ComplexityScorer::new();
        let prompts = lines(EVERYDAY);
        assert!(prompts.len() >= 30);
        // The list covers the three languages.
        assert!(prompts.iter().any(|p| p.contains("你好")));
        assert!(prompts.iter().any(|p| p.contains("Terima kasih")));
        for p in prompts {
            let v = score(&s, p);
            assert!(v < EASY_MAX, "{v:.3} for everyday prompt {p:?}");
        }
    }

    #[test]
    fn hard_multi_step_prompts_score_high() {
        let s = ComplexityScorer::new();
        let prompts = lines(HARD);
        assert!(prompts.len() >= 6);
        for p in prompts {
            let v = score(&s, p);
            assert!(v >= HARD_MIN, "{v:.3} for hard prompt {p:?}");
        }
    }

    fn mid_prompts() -> Vec<&'static str> {
        vec![
            "Explain how photosynthesis works.",
            "Summarise the plot of Hamlet in a few paragraphs.",
            "请解释一下光合作用的原理。",
            "Jelaskan cara kerja fotosintesis.",
            "Hi",
        ]
    }

    #[test]
    fn tools_and_schema_raise_the_score() {
        let s = ComplexityScorer::new();
        for p in mid_prompts() {
            let base = s.score(&user(p), RequestShape::default());
            let tools = s.score(
                &user(p),
                RequestShape {
                    has_tools: true,
                    ..Default::default()
                },
            );
            let schema = s.score(
                &user(p),
                RequestShape {
                    has_schema: true,
                    ..Default::default()
                },
            );
            let both = s.score(
                &user(p),
                RequestShape {
                    has_tools: true,
                    has_schema: true,
                    ..Default::default()
                },
            );
            assert!(tools > base && schema > base && both > tools && both > schema, "{p:?}");
        }
    }

    #[test]
    fn long_outputs_raise_the_score() {
        let s = ComplexityScorer::new();
        for p in mid_prompts() {
            let at = |m: Option<u32>| {
                s.score(
                    &user(p),
                    RequestShape {
                        max_tokens: m,
                        ..Default::default()
                    },
                )
            };
            // Short limits are no demand; beyond 512 tokens each doubling adds.
            assert_eq!(at(None), at(Some(100)));
            assert!(at(Some(1024)) > at(Some(512)), "{p:?}");
            assert!(at(Some(4096)) > at(Some(1024)), "{p:?}");
            assert!(at(Some(u32::MAX)) >= at(Some(4096)), "{p:?}");
        }
    }

    #[test]
    fn deeper_conversations_raise_the_score() {
        let s = ComplexityScorer::new();
        for p in mid_prompts() {
            let mut turns = vec![Turn {
                role: Role::User,
                text: p,
            }];
            let mut last = s.score(&turns, RequestShape::default());
            for _ in 0..4 {
                turns.push(Turn {
                    role: Role::Assistant,
                    text: "Sure.",
                });
                turns.push(Turn {
                    role: Role::User,
                    text: p,
                });
                let now = s.score(&turns, RequestShape::default());
                assert!(now > last, "{p:?}: {now} after {last}");
                last = now;
            }
        }
    }

    #[test]
    fn odd_inputs_stay_finite_and_bounded() {
        let s = ComplexityScorer::new();
        let huge = "a".repeat(2 << 20);
        let digits = "1234567890".repeat(100_000);
        let newlines = "\n".repeat(100_000);
        let options = "A. x\n".repeat(10_000);
        let cjk = "计算证明代码".repeat(50_000);
        let mixed = "\0\u{7f}\u{feff}é🙂\u{2028}\u{e000}```{};->==".repeat(10_000);
        let words = "step by step write a python function calculate ".repeat(20_000);
        let texts = ["", " ", &huge, &digits, &newlines, &options, &cjk, &mixed, &words];
        let shapes = [
            RequestShape::default(),
            RequestShape {
                max_tokens: Some(0),
                has_tools: true,
                has_schema: true,
            },
            RequestShape {
                max_tokens: Some(u32::MAX),
                has_tools: true,
                has_schema: true,
            },
        ];
        let check = |v: f32| assert!(v.is_finite() && (0.0..=1.0).contains(&v), "{v}");
        for shape in shapes {
            check(s.score(&[], shape));
            for t in texts {
                check(s.score(&user(t), shape));
            }
            let many: Vec<Turn<'_>> = (0..10_000)
                .map(|i| Turn {
                    role: if i % 2 == 0 { Role::User } else { Role::Assistant },
                    text: "ok",
                })
                .collect();
            check(s.score(&many, shape));
        }
    }

    /// The token estimate's rule, counted on chars: four Latin chars per
    /// token, one per char at U+2E80 and above, four per turn.
    fn reference_tokens(turns: &[Turn<'_>]) -> u32 {
        turns
            .iter()
            .map(|t| {
                let wide = t.text.chars().filter(|&c| c as u32 >= 0x2E80).count() as u32;
                let latin = t.text.chars().count() as u32 - wide;
                4 + wide + latin.div_ceil(4)
            })
            .sum()
    }

    #[test]
    fn estimate_tokens_matches_the_char_rule() {
        // The byte-level count must agree with counting chars.
        let texts = [
            "",
            "hello world",
            "你好，世界！",
            "é ü ñ",
            "\u{2E7F}\u{2E80}\u{2FFF}",
            "🙂🙂 abc",
            "Berapa 12,5 kg?",
        ];
        for t in texts {
            let turns = [Turn {
                role: Role::User,
                text: t,
            }];
            let mut c = Counts::default();
            scan_bytes(t.as_bytes(), &ComplexityScorer::new().words, &mut c);
            assert_eq!(c.tokens, reference_tokens(&turns), "scan of {t:?}");
        }
    }

    #[test]
    fn score_with_tokens_agrees_with_score_and_estimate() {
        let s = ComplexityScorer::new();
        let texts = [
            "",
            "Hi",
            "你好，世界！",
            "Tom has 3 apples and buys 5 more. How many?",
            "A. x\nB. y\nC. z",
        ];
        for a in texts {
            for b in texts {
                let turns = [
                    Turn {
                        role: Role::User,
                        text: a,
                    },
                    Turn {
                        role: Role::Assistant,
                        text: b,
                    },
                    Turn {
                        role: Role::User,
                        text: b,
                    },
                ];
                let shape = RequestShape {
                    max_tokens: Some(2048),
                    ..Default::default()
                };
                let (score, tokens) = s.score_with_tokens(&turns, shape);
                assert_eq!(score, s.score(&turns, shape));
                assert_eq!(tokens, reference_tokens(&turns));
            }
        }
    }

    fn family_count(s: &ComplexityScorer, text: &str, f: Family) -> u32 {
        let mut c = Counts::default();
        scan_bytes(text.as_bytes(), &s.words, &mut c);
        if c.non_ascii {
            s.scan_non_ascii(text.as_bytes(), &mut c.families);
        }
        c.families[f as usize]
    }

    #[test]
    fn keywords_respect_word_boundaries_and_stems() {
        let s = ComplexityScorer::new();
        assert_eq!(family_count(&s, "Calculate it, then recalculate.", Family::Maths), 1);
        assert_eq!(family_count(&s, "calculating CALCULATIONS", Family::Maths), 2);
        assert_eq!(family_count(&s, "Hi! high hint", Family::Everyday), 1);
        assert_eq!(
            family_count(&s, "Explain it step-by-step, Step By Step", Family::Reasoning),
            2
        );
        assert_eq!(family_count(&s, "I use C++ and node.js", Family::Code), 2);
        assert_eq!(family_count(&s, "10km", Family::NumberWord), 0);
        assert_eq!(family_count(&s, "请计算这个方程", Family::Maths), 2);
        assert_eq!(family_count(&s, "Tolong hitunglah", Family::Maths), 1);
    }

    #[test]
    fn multiple_choice_and_word_problems_are_recognised() {
        let s = ComplexityScorer::new();
        let kind = |t: &str| s.features(&user(t), RequestShape::default()).kind;
        assert_eq!(kind("Which is a prime?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:"), Kind::Choice);
        assert_eq!(
            kind("Tom has 3 apples and buys 5 more. How many does he have?"),
            Kind::Arithmetic
        );
        assert_eq!(kind("Write a poem about the sea."), Kind::Open);
        // Code with quantities is no word problem.
        assert_eq!(kind("Why does `x = 3; y = 5` print 8 in this Python code?"), Kind::Open);
        assert_eq!(kind("What does def f(a): return a * 3 give for 4 and 5?"), Kind::Open);
        assert_eq!(kind("Set a timer for 10 minutes."), Kind::Open);
    }

    #[test]
    fn lexicon_is_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for (_, list) in FAMILIES {
            for &p in list {
                let body = p.strip_suffix('*').unwrap_or(p);
                assert!(!body.is_empty() && !body.contains('*'), "{p:?}");
                assert!(seen.insert(body.to_lowercase()), "duplicate pattern {p:?}");
                if words::is_word_pattern(p) {
                    // Stems key on their first four letters.
                    let first_word = body.split(' ').next().unwrap_or("");
                    let letters = first_word.bytes().take_while(u8::is_ascii_alphabetic).count();
                    assert!(!p.ends_with('*') || letters >= 4, "stem too short: {p:?}");
                } else {
                    // The automaton only sees runs of non-ASCII bytes.
                    assert!(!body.is_ascii() && body.chars().all(|c| !c.is_ascii()), "{p:?}");
                }
            }
        }
        let s = ComplexityScorer::new();
        assert!(s.ac.is_some());
        assert!(s.words.len() > 400);
    }

    #[test]
    fn weight_tables_name_learned_features_only() {
        for (table, arithmetic) in [(weights::ARITHMETIC, true), (weights::CHOICE, false)] {
            for (name, w) in table {
                assert!(w.is_finite());
                let spec = FEATURES.iter().find(|f| f.name == *name).expect("known feature");
                match spec.weighting {
                    Weighting::Learned {
                        arithmetic: a,
                        choice: c,
                        ..
                    } => assert!(if arithmetic { a } else { c }, "{name}"),
                    Weighting::Hand(_) => panic!("{name} is hand-set"),
                }
            }
        }
        let names: std::collections::HashSet<_> = FEATURES.iter().map(|f| f.name).collect();
        assert_eq!(names.len(), N_FEATURES);
    }
}
