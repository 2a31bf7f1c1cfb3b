//! Privacy: entities (with validators) and sensitive topics, scored 0..1.
//!
//! [`PrivacyScanner::scan`] reads every message of a conversation (all roles:
//! whatever is in the request would leave the device) and reports the
//! sensitive spans it finds and one score. It is pure: no IO, no clock, no
//! allocation beyond the report and a few scratch vectors.
//!
//! # What is detected
//!
//! | label | how |
//! |---|---|
//! | `email` | `local@domain.tld` around each `@` |
//! | `phone` | digit groups: `+CC …`, North American `(555) 123-4567`, China mobiles `1[3-9]x` (also `+86`), Indonesian `08xx`/`+62 8…`, UK `07…`, trunk-prefixed European groupings; any 7–13 digits after a cue word (`phone`, `call`, `电话`, `telepon`) |
//! | `credit_card` | 12–19 digits (runs or groups of four), Luhn, known IIN ranges; 12 digits only after a card cue |
//! | `iban` | country code + check digits, per-country length, mod 97 |
//! | `us_ssn` | `AAA-GG-SSSS` (or nine digits after `SSN`), area/group/serial rules |
//! | `cn_resident_id` | 18 characters, province, birth date, ISO 7064 MOD 11-2 |
//! | `id_nik` | 16 digits, province code, date of birth (+40 for women), serial |
//! | `ip_address` | IPv4 (dotted, ≤ 255) and IPv6 (std parser); private and loopback ranges weigh less |
//! | `secret` | OpenAI/Anthropic `sk-…`, AWS `AKIA…`, GitHub `ghp_`/`github_pat_`, Google `AIza…`, Slack `xox?-`, Stripe `sk_live_`, PEM private keys, JWTs, `password=`/`secret:`/`token=` pairs with a literal value |
//! | `person` | cue phrases (`my name is`, `I'm`, `call me`, `Dear`, `Mr./Mrs./Dr.`, `nama saya`, `Bapak/Ibu`, `我叫`, `王先生`), given-name + surname pairs from census and hand-written lexicons and surname endings, single given names |
//! | `street_address` | house number + street word, street prefixes (`Rue`, `Via`, `Jl.`), one-word European streets (`…vej 79`), P.O./PSC/Unit boxes, APO/FPO, units, postcodes, Chinese `…路88号` and division chains |
//! | topics | health, finance, legal, religion, sexuality, ethnicity, politics keywords (EN/ID/ZH), counted when the writer speaks about themself |
//!
//! # The score
//!
//! Each entity carries a weight, the probability-like strength of the
//! evidence that the request is sensitive; per label the strongest counts,
//! and labels combine as `1 − (1 − w₁)·∏ᵢ₌₂ (1 − wᵢ/2)` over the weights in
//! descending order, so a second kind of evidence raises the score without
//! ever reaching 1 by itself.
//!
//! | evidence | weight |
//! |---|---|
//! | validated identifiers: card, IBAN, SSN, China ID, secrets | 0.9–0.95 |
//! | NIK (plausible, no checksum exists) | 0.85 (0.95 after `NIK`/`KTP`) |
//! | e-mail, phone, person after a cue, full names, street address | 0.6–0.8 |
//! | a single given name; public IP address | 0.5–0.65 |
//! | a topic the writer discloses about themself | 0.5–0.6 |
//! | a topic mentioned in general, a private IP, a lone postcode or unit | < 0.5 |
//!
//! The default policy keeps requests with `privacy >= 0.5` on the device:
//! any one identifier, contact detail, named person or self-disclosed
//! special-category topic is enough. In exercise-shaped text (maths word
//! problems, multiple-choice questions) names are placeholders and topics
//! are subject matter, so both are capped below 0.5.

mod address;
mod cjk;
mod lexicon;
mod numeric;
mod patterns;
mod person;
mod text;
mod topics;
mod validate;

use std::cell::RefCell;

use crate::Turn;
use lexicon::Lexicon;
use text::{Kind, Tok};

/// The kinds of sensitive span Tandem recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    Email,
    Phone,
    CreditCard,
    Iban,
    UsSsn,
    CnResidentId,
    IdNik,
    IpAddress,
    Secret,
    Person,
    StreetAddress,
    Health,
    Finance,
    Legal,
    Religion,
    Sexuality,
    /// Racial or ethnic origin (GDPR art. 9).
    Ethnicity,
    /// Political opinions, trade-union membership (GDPR art. 9).
    Politics,
}

impl Label {
    /// Every label, in declaration order.
    pub const ALL: [Label; 18] = [
        Label::Email,
        Label::Phone,
        Label::CreditCard,
        Label::Iban,
        Label::UsSsn,
        Label::CnResidentId,
        Label::IdNik,
        Label::IpAddress,
        Label::Secret,
        Label::Person,
        Label::StreetAddress,
        Label::Health,
        Label::Finance,
        Label::Legal,
        Label::Religion,
        Label::Sexuality,
        Label::Ethnicity,
        Label::Politics,
    ];

    /// The stable name used in policies, logs and the API (`credit_card`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Email => "email",
            Label::Phone => "phone",
            Label::CreditCard => "credit_card",
            Label::Iban => "iban",
            Label::UsSsn => "us_ssn",
            Label::CnResidentId => "cn_resident_id",
            Label::IdNik => "id_nik",
            Label::IpAddress => "ip_address",
            Label::Secret => "secret",
            Label::Person => "person",
            Label::StreetAddress => "street_address",
            Label::Health => "health",
            Label::Finance => "finance",
            Label::Legal => "legal",
            Label::Religion => "religion",
            Label::Sexuality => "sexuality",
            Label::Ethnicity => "ethnicity",
            Label::Politics => "politics",
        }
    }

    /// Topics mark a whole request as sensitive; they are not values to redact.
    pub fn is_topic(self) -> bool {
        matches!(
            self,
            Label::Health
                | Label::Finance
                | Label::Legal
                | Label::Religion
                | Label::Sexuality
                | Label::Ethnicity
                | Label::Politics
        )
    }

    /// How specific a detector is: on overlapping spans of equal weight the
    /// more specific label wins.
    fn specificity(self) -> u8 {
        match self {
            Label::Secret => 10,
            Label::CnResidentId | Label::CreditCard | Label::Iban => 9,
            Label::UsSsn | Label::IdNik => 8,
            Label::Email => 7,
            Label::IpAddress => 6,
            Label::Phone => 5,
            Label::StreetAddress => 4,
            Label::Person => 3,
            _ => 1,
        }
    }
}

/// One sensitive span. Offsets are within the message's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    pub label: Label,
    /// Index of the message in the conversation; past the last message,
    /// the index of a side text (see `Scorer::score_with_side`) plus the
    /// number of messages.
    pub message: usize,
    /// Character offsets (Unicode scalar values), as the API reports them.
    pub start: usize,
    pub end: usize,
    /// Byte offsets, for redaction.
    pub byte_start: usize,
    pub byte_end: usize,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PrivacyReport {
    pub score: f32,
    /// Sorted by message, then start offset; never overlapping.
    pub entities: Vec<Entity>,
}

/// Entities weaker than this are evidence for the score but not reported.
const REPORT_MIN: f32 = 0.45;

/// A candidate span before overlaps are resolved. Byte offsets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cand {
    pub label: Label,
    pub start: usize,
    pub end: usize,
    /// Strength of the evidence that the request is sensitive, 0..1.
    pub weight: f32,
}

/// What every detector reads about the message being scanned.
pub(crate) struct Ctx<'a> {
    pub text: &'a str,
    pub toks: &'a [Tok],
    pub lex: &'a Lexicon,
    /// The message is a maths word problem or a multiple-choice question.
    pub exercise: bool,
    /// The message has no capitalised word (typed in lower case): names and
    /// street names are looked for in lower case too.
    pub lower_mode: bool,
}

impl Ctx<'_> {
    /// A word with flag `f` ends within `window` bytes before `byte`.
    pub(crate) fn cue_before(&self, byte: usize, window: usize, f: u64) -> bool {
        let i = self.toks.partition_point(|t| t.start < byte);
        self.toks[..i]
            .iter()
            .rev()
            .take_while(|t| t.end + window >= byte)
            .any(|t| t.kind == Kind::Word && t.is(f))
    }

    /// A word with flag `f` starts within `window` bytes after `byte`.
    pub(crate) fn cue_after(&self, byte: usize, window: usize, f: u64) -> bool {
        let i = self.toks.partition_point(|t| t.start < byte);
        self.toks[i..]
            .iter()
            .take_while(|t| t.start <= byte + window)
            .any(|t| t.kind == Kind::Word && t.is(f))
    }

    /// One of `cues` (CJK) occurs within 30 bytes before `byte`.
    pub(crate) fn cjk_cue_before(&self, byte: usize, cues: &[&str]) -> bool {
        let mut s = byte.saturating_sub(30);
        while s < byte && !self.text.is_char_boundary(s) {
            s += 1;
        }
        let Some(window) = self.text.get(s..byte) else {
            return false;
        };
        !window.is_ascii() && cues.iter().any(|c| window.contains(c))
    }
}

/// Lexicons and automata, built once and shared by every request.
pub struct PrivacyScanner {
    lex: Lexicon,
    cjk: cjk::Cjk,
}

impl PrivacyScanner {
    /// Loads the lexicons (about 130,000 words) and compiles the automata:
    /// a few milliseconds, once per process.
    pub fn new() -> Self {
        PrivacyScanner {
            lex: Lexicon::new(),
            cjk: cjk::Cjk::new(),
        }
    }

    /// Scans every message of a conversation.
    pub fn scan(&self, turns: &[Turn<'_>]) -> PrivacyReport {
        self.scan_with_side(turns, &[])
    }

    /// Scans every message, then every string of `side`; an entity in
    /// `side[k]` has `message == turns.len() + k`.
    pub fn scan_with_side(&self, turns: &[Turn<'_>], side: &[&str]) -> PrivacyReport {
        thread_local! {
            /// Scratch vectors reused by the scans of this thread.
            static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
        }
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => {
                let r = self.scan_texts(turns, side, &mut s);
                s.trim();
                r
            }
            // Unreachable (a scan never re-enters itself), but never a panic.
            Err(_) => self.scan_texts(turns, side, &mut Scratch::default()),
        })
    }

    fn scan_texts(&self, turns: &[Turn<'_>], side: &[&str], s: &mut Scratch) -> PrivacyReport {
        let mut best = [0f32; Label::ALL.len()];
        let mut entities = Vec::new();
        let texts = turns.iter().map(|t| t.text).chain(side.iter().copied());
        for (message, text) in texts.enumerate() {
            if text.is_empty() {
                continue;
            }
            self.scan_text(text, s);
            let start_len = entities.len();
            for c in &s.resolved {
                let slot = &mut best[c.label as usize];
                *slot = slot.max(c.weight);
                if c.weight >= REPORT_MIN {
                    entities.push(Entity {
                        label: c.label,
                        message,
                        start: c.start,
                        end: c.end,
                        byte_start: c.start,
                        byte_end: c.end,
                    });
                }
            }
            char_offsets(text, &mut entities[start_len..]);
        }
        PrivacyReport {
            score: combine(&best),
            entities,
        }
    }

    /// Runs every detector over one message; leaves non-overlapping
    /// candidates, sorted by start, in `s.resolved`.
    fn scan_text(&self, text: &str, s: &mut Scratch) {
        let stats = text::tokenize(text, &self.lex, &mut s.toks, &mut s.buf);
        let ctx = Ctx {
            text,
            toks: &s.toks,
            lex: &self.lex,
            exercise: is_exercise(text, &s.toks, stats.numbers),
            lower_mode: stats.capitals == 0,
        };
        let cands = &mut s.cands;
        cands.clear();
        numeric::scan(&ctx, cands);
        patterns::emails(&ctx, cands);
        patterns::ibans(&ctx, cands);
        patterns::ipv6(&ctx, cands);
        patterns::secrets(&ctx, cands);

        person::classify(&ctx, &mut s.info, &mut s.buf);
        address::scan(&ctx, &s.info, &mut s.buf, cands);
        person::scan(&ctx, &s.info, &mut s.buf, cands);

        s.hits.clear();
        self.cjk.scan(&ctx, cands, &mut s.hits);
        topics::latin_hits(&ctx, &mut s.buf, &mut s.hits);
        topics::judge(&ctx, &s.hits, cands);

        resolve(cands, &mut s.merged, &mut s.resolved);
    }
}

impl Default for PrivacyScanner {
    fn default() -> Self {
        Self::new()
    }
}

/// Scratch space reused across messages and, per thread, across scans.
#[derive(Default)]
struct Scratch {
    toks: Vec<Tok>,
    buf: String,
    cands: Vec<Cand>,
    merged: Vec<Cand>,
    resolved: Vec<Cand>,
    info: Vec<person::NameTok>,
    hits: Vec<cjk::TopicHit>,
}

impl Scratch {
    /// Gives back the memory of an exceptionally long prompt.
    fn trim(&mut self) {
        const KEEP: usize = 1 << 14;
        if self.toks.capacity() > KEEP {
            self.toks = Vec::new();
            self.info = Vec::new();
        }
        if self.cands.capacity() > KEEP {
            self.cands = Vec::new();
            self.merged = Vec::new();
            self.resolved = Vec::new();
        }
    }
}

/// Merges overlapping candidates of one label, then keeps, among overlapping
/// candidates of different labels, the heaviest (then most specific, then
/// longest). Output sorted by start.
fn resolve(cands: &mut [Cand], merged: &mut Vec<Cand>, out: &mut Vec<Cand>) {
    out.clear();
    merged.clear();
    cands.sort_unstable_by_key(|c| (c.label, c.start));
    for c in cands.iter() {
        if c.end <= c.start {
            continue;
        }
        match merged.last_mut() {
            Some(m) if m.label == c.label && c.start < m.end => {
                m.end = m.end.max(c.end);
                m.weight = m.weight.max(c.weight);
            }
            _ => merged.push(*c),
        }
    }
    merged.sort_unstable_by(|a, b| {
        b.weight
            .total_cmp(&a.weight)
            .then(b.label.specificity().cmp(&a.label.specificity()))
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
    });
    for &c in merged.iter() {
        // Topic keywords never displace a value; values displace topics.
        if !out.iter().any(|o| o.start < c.end && c.start < o.end) {
            out.push(c);
        }
    }
    out.sort_unstable_by_key(|c| (c.start, c.end));
}

/// Fills the character offsets of entities whose byte offsets are set.
/// Entities are sorted and disjoint, so one forward walk suffices.
fn char_offsets(text: &str, entities: &mut [Entity]) {
    if text.is_ascii() {
        return;
    }
    let mut byte = 0;
    let mut chars = 0;
    let mut advance = |to: usize| {
        let to = to.min(text.len());
        if to >= byte {
            chars += text.get(byte..to).map_or(0, |s| s.chars().count());
            byte = to;
        }
        chars
    };
    for e in entities.iter_mut() {
        e.start = advance(e.byte_start);
        e.end = advance(e.byte_end);
    }
}

/// Combines the strongest weight of each label into the score. Topics count
/// as one signal (their strongest), so that a history passage touching
/// religion, politics and law does not add up to a disclosure.
fn combine(best: &[f32]) -> f32 {
    let topic = Label::ALL
        .iter()
        .filter(|l| l.is_topic())
        .map(|&l| best[l as usize])
        .fold(0f32, f32::max);
    let mut ws = [0f32; Label::ALL.len() + 1];
    let mut n = 0;
    for w in Label::ALL
        .iter()
        .filter(|l| !l.is_topic())
        .map(|&l| best[l as usize])
        .chain([topic])
    {
        if w > 0.0 {
            ws[n] = w;
            n += 1;
        }
    }
    let ws = &mut ws[..n];
    ws.sort_unstable_by(|a, b| b.total_cmp(a));
    let Some((&first, rest)) = ws.split_first() else {
        return 0.0;
    };
    let mut keep = 1.0 - first;
    for &w in rest {
        keep *= 1.0 - 0.5 * w;
    }
    (1.0 - keep).clamp(0.0, 1.0)
}

/// Maths word problems and multiple-choice questions: their names are
/// placeholders and their topics subject matter.
fn is_exercise(text: &str, toks: &[Tok], numbers: usize) -> bool {
    // Multiple choice: option lines "A." / "(B)" / "C)" for three letters or more, or a trailing "Answer:".
    let trimmed = text.trim_end();
    if trimmed.ends_with("Answer:") || trimmed.ends_with("答案：") {
        return true;
    }
    let mut options = 0u8;
    for (i, t) in toks.iter().enumerate() {
        if !(t.nl_before || i == 0) {
            continue;
        }
        if t.kind == Kind::Word && t.len() == 1 {
            let c = t.ch;
            let next = toks.get(i + 1);
            if ('A'..='E').contains(&c)
                && next.is_some_and(|n| n.kind == Kind::Punct && matches!(n.ch, '.' | ')' | ':'))
            {
                options |= 1 << (c as u8 - b'A');
            }
        }
        if t.is_punct('(')
            && let Some(l) = toks.get(i + 1)
            && l.kind == Kind::Word
            && l.len() == 1
            && ('A'..='E').contains(&l.ch)
        {
            options |= 1 << (l.ch as u8 - b'A');
        }
    }
    if options.count_ones() >= 3 {
        return true;
    }
    // Word problem: two quantities or more (digits or number words) and a
    // quantitative question.
    if numbers < 2 {
        return false;
    }
    let word = |t: &Tok, w: &str| t.kind == Kind::Word && text[t.start..t.end].eq_ignore_ascii_case(w);
    let asks = toks.windows(2).any(|p| {
        if !p[0].is(lexicon::flag::ASKS) {
            return false;
        }
        (word(&p[0], "how")
            && ["many", "much", "long", "far", "old", "fast", "often"]
                .iter()
                .any(|w| word(&p[1], w)))
            || (word(&p[0], "in") && word(&p[1], "total"))
            || (word(&p[0], "what") && ["percentage", "fraction", "percent"].iter().any(|w| word(&p[1], w)))
            || (["what", "find"].iter().any(|w| word(&p[0], w))
                && ["is", "was", "the", "are", "were", "will"]
                    .iter()
                    .any(|w| word(&p[1], w)))
            || (word(&p[0], "what") && p[1].kind == Kind::Punct && matches!(p[1].ch, '\'' | '’'))
            || ["calculate", "compute", "determine", "evaluate"]
                .iter()
                .any(|w| word(&p[0], w))
    });
    asks || (toks.last().is_some_and(|t| t.is_punct('?')) && numbers >= 3)
}

#[cfg(test)]
mod tests;
