//! Person names in Latin script: cue phrases (`my name is`, `Mr.`, `Dear`,
//! `nama saya`, `Bapak`), given-name + surname pairs from the lexicons and
//! surname morphology, and single names in a context that speaks of a person.
//!
//! Evidence per token: a *given* score (2 = a given name that is no English
//! word, 1 = ambiguous or unknown) and a *surname* score (2 = a census or
//! listed surname, or a surname ending such as `-sson`, `-ová`, `-nen`;
//! 1 = ambiguous or unknown). Capitalisation carries the rest: a capitalised
//! token that is no English word is a proper noun of some kind.

use super::lexicon::{self, flag};
use super::text::{Case, Kind, Tok};
use super::{Cand, Ctx, Label};

/// What the lexicons say about one token as a name part.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NameTok {
    /// The token may be part of a name at all.
    pub ok: bool,
    /// A single capital letter (`B`, `B.`): a middle initial.
    pub initial: bool,
    pub given: u8,
    pub sur: u8,
    /// In no lexicon at all (neither name nor English word).
    pub unknown: bool,
}

/// Surname endings of European naming systems. Checked only on tokens that
/// are neither English words nor in the name lists.
const SURNAME_ENDINGS: &[&str] = &[
    "ová", "ova", "ský", "ská", "sky", "ski", "ska", "cki", "cka", "dzki", "wicz", "vić", "vic", "ić", "ič", "ovich",
    "evich", "enko", "chuk", "czuk", "shvili", "dze", "escu", "sson", "ssen", "sen", "dóttir", "dottir", "berg",
    "ström", "strom", "qvist", "kvist", "lund", "gren", "nen", "poulos", "akis", "idis", "oglu", "oğlu", "ov", "ev",
    "eva", "yan", "ian", "ez", "ini", "etti", "elli", "mann", "stein", "sch", "ek", "ák", "ár", "ás", "ás", "ó",
];

fn surname_shape(lower: &str) -> bool {
    lower.len() >= 5
        && SURNAME_ENDINGS
            .iter()
            .any(|e| ends_with(lower.as_bytes(), e.as_bytes()))
}

/// `str::ends_with` without a call into `memcmp`: the endings are a few bytes.
#[inline]
pub(crate) fn ends_with(w: &[u8], e: &[u8]) -> bool {
    w.len() >= e.len() && w.iter().rev().zip(e.iter().rev()).all(|(a, b)| a == b)
}

/// Fills `info` for every token that may be a name part. Capitalised words
/// always; lower-case words only in `lower_mode` (a message typed without
/// capitals).
pub(crate) fn classify(ctx: &Ctx<'_>, info: &mut Vec<NameTok>, buf: &mut String) {
    let lower_mode = ctx.lower_mode;
    info.clear();
    info.resize(ctx.toks.len(), NameTok::default());
    for (i, t) in ctx.toks.iter().enumerate() {
        if t.kind != Kind::Word {
            continue;
        }
        if t.case == Case::Cap && t.len() == 1 {
            info[i] = NameTok {
                ok: true,
                initial: true,
                ..NameTok::default()
            };
            continue;
        }
        let candidate = t.case == Case::Cap || (lower_mode && t.case == Case::Lower && t.len() >= 3);
        if !candidate || t.is(flag::STOP | flag::NOT_NAME | flag::TITLE) || t.len() < 2 {
            continue;
        }
        info[i] = name_tok(ctx, t, buf);
    }
}

/// A capitalised token after a title: any non-common word is a surname.
fn title_name(ctx: &Ctx<'_>, t: &Tok, buf: &mut String) -> NameTok {
    let mut n = name_tok(ctx, t, buf);
    if !n.ok && t.key != 0 && ctx.lex.large_key(t.key) & flag::COMMON == 0 {
        n.ok = true;
        n.sur = 1;
    }
    n
}

pub(crate) fn name_tok(ctx: &Ctx<'_>, t: &Tok, buf: &mut String) -> NameTok {
    let word = &ctx.text[t.start..t.end];
    let mut lf = if t.key != 0 {
        ctx.lex.large_key(t.key)
    } else if lexicon::lower_into(word, buf, false) {
        ctx.lex.large(buf)
    } else {
        0
    };
    if lf == 0 && t.non_ascii && lexicon::lower_into(word, buf, true) {
        lf = ctx.lex.large(buf);
    }
    let first = lf & flag::FIRST != 0;
    let last = lf & flag::LAST != 0;
    let eng = lf & flag::WORD != 0;
    let common = lf & flag::COMMON != 0;
    let unknown = lf == 0;
    // The ending test reads the unfolded lower-case form.
    let shape = lf == 0 && lexicon::lower_into(word, buf, false) && surname_shape(buf);
    let given = if first && !eng {
        2
    } else if (first && !common) || unknown {
        1
    } else {
        0
    };
    let sur = if (last || shape) && !eng {
        2
    } else if (first && !eng) || (last && !common) || unknown {
        1
    } else {
        0
    };
    NameTok {
        ok: given > 0 || sur > 0,
        initial: false,
        given,
        sur,
        unknown: unknown && !shape,
    }
}

/// The name run starting at token `k`: name tokens and initials, at most four
/// parts. Returns the index past the run and how many real (non-initial) parts it has.
fn name_run(ctx: &Ctx<'_>, info: &[NameTok], k: usize, allow_lower: bool, buf: &mut String) -> (usize, usize) {
    let toks = ctx.toks;
    let mut j = k;
    let mut parts = 0;
    let mut real = 0;
    while j < toks.len() && parts < 4 {
        if j > k {
            // Parts are separated by a space, or an initial's full stop then a space.
            let prev = &toks[j - 1];
            let spaced = toks[j].space_before && !toks[j].nl_before;
            if !spaced && !prev.is_punct('.') {
                break;
            }
        }
        let t = &toks[j];
        let mut n = info[j];
        if !n.ok && allow_lower && t.kind == Kind::Word && t.case == Case::Lower && !t.is(flag::STOP) && t.len() >= 2 {
            let lower = name_tok(ctx, t, buf);
            // Typed in lower case after a strong cue: any non-word counts.
            if lower.given == 2 || lower.sur == 2 || lower.unknown {
                n = lower;
            }
        }
        if !n.ok {
            break;
        }
        if n.initial {
            j += 1;
            if j < toks.len() && toks[j].is_punct('.') {
                j += 1;
            }
            parts += 1;
            continue;
        }
        real += 1;
        parts += 1;
        j += 1;
    }
    // A run ending on an initial gives the initial back ("Jones A." → "Jones").
    while j > k && (info.get(j - 1).is_some_and(|n| n.initial) || toks[j - 1].is_punct('.')) {
        j -= 1;
    }
    (j, real)
}

fn push(ctx: &Ctx<'_>, out: &mut Vec<Cand>, a: usize, b: usize, weight: f32) {
    if b <= a {
        return;
    }
    let weight = if ctx.exercise { (weight * 0.5).min(0.4) } else { weight };
    out.push(Cand {
        label: Label::Person,
        start: ctx.toks[a].start,
        end: ctx.toks[b - 1].end,
        weight,
    });
}

fn word_is(ctx: &Ctx<'_>, i: usize, words: &[&str]) -> bool {
    ctx.toks
        .get(i)
        .is_some_and(|t| t.kind == Kind::Word && words.iter().any(|w| ctx.text[t.start..t.end].eq_ignore_ascii_case(w)))
}

/// Scans one message for person names.
pub(crate) fn scan(ctx: &Ctx<'_>, info: &[NameTok], buf: &mut String, out: &mut Vec<Cand>) {
    let toks = ctx.toks;
    let n = toks.len();
    let mut covered = 0usize; // tokens before this index already belong to a name
    let mut i = 0;
    while i < n {
        let t = &toks[i];
        if t.kind != Kind::Word {
            i += 1;
            continue;
        }
        // 1. Titles: Mr. / Dr. / Bapak / Ibu + name.
        if t.is(flag::TITLE) && (t.case == Case::Cap || t.case == Case::Upper || t.len() <= 3) {
            let mut k = i + 1;
            if k < n && toks[k].is_punct('.') {
                k += 1;
            }
            if k < n
                && toks[k].kind == Kind::Word
                && toks[k].case == Case::Cap
                && !toks[k].nl_before
                && !toks[k].is(flag::STOP)
            {
                // After a title even a place name is a surname: "Ms. Austin".
                let first = if info[k].ok {
                    info[k]
                } else {
                    title_name(ctx, &toks[k], buf)
                };
                let (end, real) = name_run(ctx, info, k, false, buf);
                let end = end.max(k + 1);
                if (real > 0 || first.ok) && (first.given > 0 || first.sur > 0) {
                    push(ctx, out, k, end, 0.75);
                    covered = end;
                    i = end;
                    continue;
                }
            }
        }
        // 2. Cue phrases.
        if let Some((k, strong)) = if t.is(flag::NAME_CUE) { cue_phrase(ctx, i) } else { None }
            && k < n
        {
            {
                let (mut end, mut real) = name_run(ctx, info, k, strong, buf);
                let first = info.get(k).copied().unwrap_or_default();
                // "Her maiden name is Key": after a strong cue a capitalised word is the name.
                if strong
                    && real == 0
                    && toks[k].kind == Kind::Word
                    && toks[k].case == Case::Cap
                    && !toks[k].is(flag::STOP)
                {
                    end = k + 1;
                    real = 1;
                }
                let good = real > 0 && (strong || first.given == 2 || first.sur == 2 || first.unknown);
                if good {
                    push(ctx, out, k, end, if strong { 0.75 } else { 0.65 });
                    covered = end;
                    i = end;
                    continue;
                }
            }
        }
        if i < covered || !info[i].ok || info[i].initial {
            i += 1;
            continue;
        }
        // 3. Pairs and triples: given + (initial) + surname.
        let (end, real) = name_run(ctx, info, i, false, buf);
        if real >= 2 {
            let last = (i..end).rev().find(|&j| !info[j].initial).unwrap_or(i);
            let has_initial = (i..end).any(|j| info[j].initial);
            let g = info[i].given;
            let s = info[last].sur;
            let sum = g + s;
            let both_unknown = info[i].unknown && info[last].unknown;
            let lower = toks[i].case == Case::Lower;
            let enough = if lower {
                g == 2 && s == 2
            } else {
                sum >= 3 || (has_initial && sum >= 2)
            };
            if g >= 1 && s >= 1 && enough && (has_initial || !both_unknown) {
                push(ctx, out, i, end, if sum >= 4 { 0.7 } else { 0.65 });
                covered = end;
                i = end;
                continue;
            }
            let foreign = toks[i].non_ascii && toks[last].non_ascii;
            if both_unknown && (context(ctx, i, end) >= 2 || foreign) {
                push(ctx, out, i, end, 0.6);
                covered = end;
                i = end;
                continue;
            }
        }
        // 4. Single names.
        let nt = info[i];
        let ctxs = context(ctx, i, i + 1);
        let w = if nt.given == 2 {
            if ctxs > 0 { 0.6 } else { 0.5 }
        } else if nt.sur == 2 {
            match ctxs {
                0 => 0.0,
                1 => 0.45,
                _ => 0.55,
            }
        } else if nt.unknown || nt.given == 1 {
            if ctxs >= 2 { 0.55 } else { 0.0 }
        } else {
            0.0
        };
        // Sentence-initial capitals are weak evidence for ambiguous words; in
        // lower-case text a lone word needs a person context.
        let lower_alone = toks[i].case == Case::Lower && ctxs < 2;
        if w > 0.0 && !lower_alone && !(nt.given == 1 && !nt.unknown && is_sentence_start(ctx, i) && ctxs < 2) {
            push(ctx, out, i, i + 1, w);
        }
        i += 1;
    }
}

fn is_sentence_start(ctx: &Ctx<'_>, i: usize) -> bool {
    i == 0 || ctx.toks[i - 1].sent != ctx.toks[i].sent
}

/// How strongly the words around tokens `a..b` speak of a person:
/// 2 = a person verb or relation word, a vocative, a possessive; 1 = a copula
/// sentence (`X is very …`). 0 = nothing.
fn context(ctx: &Ctx<'_>, a: usize, b: usize) -> u8 {
    let toks = ctx.toks;
    let n = toks.len();
    let mut score = 0u8;
    if a > 0 {
        let p = &toks[a - 1];
        if p.kind == Kind::Word && p.is(flag::PERSON_PRE | flag::PERSON_POST) {
            score = 2;
        }
        // ", Nicholas!" — a name addressed at the end of a sentence.
        if p.is_punct(',')
            && toks
                .get(b)
                .is_some_and(|t| t.kind == Kind::Punct && matches!(t.ch, '!' | '?' | '.'))
        {
            score = 2;
        }
    }
    if let Some(nx) = toks.get(b) {
        if nx.kind == Kind::Word && nx.is(flag::PERSON_POST) && nx.case == Case::Lower {
            score = 2;
        }
        // Possessive: "Asya's kid".
        if nx.kind == Kind::Punct && matches!(nx.ch, '\'' | '’') && !nx.space_before {
            let s = toks.get(b + 1);
            let after = toks.get(b + 2);
            if s.is_some_and(|s| s.kind == Kind::Word && ctx.text[s.start..s.end] == *"s" && !s.space_before)
                && after.is_some_and(|w| w.kind == Kind::Word && w.case == Case::Lower)
            {
                score = score.max(2);
            }
        }
        // Vocative: "Bryce, can I …".
        if nx.is_punct(',')
            && is_sentence_start(ctx, a)
            && let Some(w) = toks.get(b + 1)
            && ((w.kind == Kind::Word && w.case == Case::Lower && w.is(flag::STOP))
                || word_is(ctx, b + 1, &["can", "could", "would", "please", "I"]))
        {
            score = score.max(2);
        }
        // Dialogue: `Koppány: "Who are you?"`.
        if nx.is_punct(':')
            && toks
                .get(b + 1)
                .is_some_and(|q| q.kind == Kind::Punct && matches!(q.ch, '"' | '“'))
        {
            score = score.max(2);
        }
        // "X is very reliable", "X is from Acme".
        if word_is(ctx, b, &["is", "was", "has", "had"])
            && word_is(
                ctx,
                b + 1,
                &[
                    "very", "so", "a", "an", "from", "not", "always", "never", "been", "really", "quite", "such", "my",
                    "our", "the",
                ],
            )
        {
            score = score.max(1);
        }
    }
    if a > 0 && b < n && word_is(ctx, a - 1, &["is"]) && word_is(ctx, b, &["so", "very", "always", "never"]) {
        score = score.max(2);
    }
    // A work named after its author: "the Hemingway novel".
    if a > 0
        && word_is(ctx, a - 1, &["the", "a", "an"])
        && word_is(
            ctx,
            b,
            &[
                "novel",
                "novels",
                "book",
                "books",
                "song",
                "songs",
                "album",
                "film",
                "films",
                "poem",
                "poems",
                "play",
                "painting",
                "biography",
                "memoir",
            ],
        )
    {
        score = score.max(2);
    }
    score
}

/// A cue phrase ending at token `i`; returns where the name starts and
/// whether the cue is strong (lower-case names accepted after it).
fn cue_phrase(ctx: &Ctx<'_>, i: usize) -> Option<(usize, bool)> {
    let toks = ctx.toks;
    let t = &toks[i];
    let w = &ctx.text[t.start..t.end];
    let lw = |s: &str| w.eq_ignore_ascii_case(s);
    let next_word = |k: usize| toks.get(k).is_some_and(|x| x.kind == Kind::Word);
    let apos = |k: usize| {
        toks.get(k)
            .is_some_and(|x| x.kind == Kind::Punct && matches!(x.ch, '\'' | '’'))
    };
    // "name is", "name's", "name:", "name was"; "nama saya", "namaku", "nama:".
    if lw("name") || lw("surname") || lw("nama") || lw("namaku") {
        let mut k = i + 1;
        if lw("nama") && word_is(ctx, k, &["saya", "aku", "ku", "lengkap"]) {
            k += 1;
            if word_is(ctx, k, &["adalah", "ialah"]) {
                k += 1;
            }
            return Some((k, true));
        }
        if word_is(ctx, k, &["is", "was", "adalah"]) {
            return Some((k + 1, true));
        }
        if apos(k) && word_is(ctx, k + 1, &["s"]) {
            return Some((k + 2, true));
        }
        if toks.get(k).is_some_and(|x| x.is_punct(':')) {
            return Some((k + 1, true));
        }
        // "What's your last name? Boyle"
        if toks.get(k).is_some_and(|x| x.is_punct('?')) && toks.get(k + 1).is_some_and(|x| x.case == Case::Cap) {
            return Some((k + 1, true));
        }
        if lw("namaku") && next_word(k) {
            return Some((k, true));
        }
        return None;
    }
    // "call me X", "calls me X".
    if (lw("call") || lw("calls")) && word_is(ctx, i + 1, &["me"]) {
        return Some((i + 2, true));
    }
    // "I'm X", "I am X", "this is X", "saya X", "aku X", "it's X".
    if w == "I" {
        if apos(i + 1) && word_is(ctx, i + 2, &["m"]) {
            return Some((i + 3, false));
        }
        if word_is(ctx, i + 1, &["am"]) {
            return Some((i + 2, false));
        }
    }
    if lw("this") && word_is(ctx, i + 1, &["is"]) {
        return Some((i + 2, false));
    }
    if lw("saya") || lw("aku") {
        return Some((i + 1, false));
    }
    if t.is(flag::PERSON_PRE)
        && matches!(
            w.to_ascii_lowercase().as_str(),
            "dear" | "hi" | "hello" | "hey" | "named" | "called"
        )
    {
        return Some((i + 1, false));
    }
    None
}
