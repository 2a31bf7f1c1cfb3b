//! Sensitive topics (GDPR article 9 special categories, plus finance and
//! legal matters) from keyword lexicons in English, Indonesian and Chinese.
//!
//! A topic makes a request sensitive only when the text is about the writer
//! or someone close: a first-person word (`I`, `my`, `we`, `saya`, `aku`,
//! `我`) in the same or the previous sentence. "Which gland regulates
//! growth?" stays a general question; "I was diagnosed with diabetes" does
//! not. Weak keywords (`doctor`, `budget`) need a second hit of the same topic.

use super::cjk::TopicHit;
use super::lexicon::{TOPIC_NAMES, flag};
use super::text::Kind;
use super::{Cand, Ctx, Label};

/// The label of topic index `i` (see [`TOPIC_NAMES`]).
fn label(i: u8) -> Label {
    match i {
        0 => Label::Health,
        1 => Label::Finance,
        2 => Label::Legal,
        3 => Label::Religion,
        4 => Label::Sexuality,
        5 => Label::Ethnicity,
        _ => Label::Politics,
    }
}

/// Collects the Latin-script topic hits of a message (words and two-word
/// phrases) into `hits`.
pub(crate) fn latin_hits(ctx: &Ctx<'_>, buf: &mut String, hits: &mut Vec<TopicHit>) {
    let toks = ctx.toks;
    for (i, t) in toks.iter().enumerate() {
        if t.kind != Kind::Word {
            continue;
        }
        let topics = (t.flags & flag::TOPIC_MASK) >> flag::TOPIC_SHIFT;
        if topics != 0 {
            push_bits(topics, t.is(flag::TOPIC_WEAK), t.start, t.end, hits);
        }
        if t.is(flag::PHRASE_HEAD)
            && let Some(nx) = toks.get(i + 1)
            && nx.kind == Kind::Word
            && nx.space_before
            && !nx.nl_before
        {
            buf.clear();
            buf.push_str(&ctx.text[t.start..t.end]);
            buf.push(' ');
            buf.push_str(&ctx.text[nx.start..nx.end]);
            buf.make_ascii_lowercase();
            let f = ctx.lex.phrase(buf);
            let topics = (f & flag::TOPIC_MASK) >> flag::TOPIC_SHIFT;
            if topics != 0 {
                push_bits(topics, f & flag::TOPIC_WEAK != 0, t.start, nx.end, hits);
            }
        }
    }
}

fn push_bits(bits: u64, weak: bool, start: usize, end: usize, hits: &mut Vec<TopicHit>) {
    for topic in 0..TOPIC_NAMES.len() as u8 {
        if bits & (1 << topic) != 0 {
            hits.push(TopicHit {
                topic,
                weak,
                start,
                end,
            });
        }
    }
}

/// Turns topic hits into weighted entities.
pub(crate) fn judge(ctx: &Ctx<'_>, hits: &[TopicHit], out: &mut Vec<Cand>) {
    if hits.is_empty() {
        return;
    }
    let toks = ctx.toks;
    // Sentences that speak in the first person.
    let n_sent = toks.last().map_or(0, |t| t.sent as usize + 1);
    let mut first_person = vec![false; n_sent];
    for t in toks {
        let fp = match t.kind {
            Kind::Word => t.is(flag::FIRST_PERSON) && !(t.case == crate::privacy::text::Case::Upper && t.len() > 1),
            Kind::Cjk => ctx.text[t.start..t.end].contains('我'),
            _ => false,
        };
        if fp {
            first_person[t.sent as usize] = true;
        }
    }
    let sent_of = |byte: usize| -> usize {
        let i = toks.partition_point(|t| t.end <= byte);
        toks.get(i).map_or(0, |t| t.sent as usize)
    };
    let personal = |byte: usize| {
        let s = sent_of(byte);
        first_person.get(s).copied().unwrap_or(false) || (s > 0 && first_person.get(s - 1).copied().unwrap_or(false))
    };
    for topic in 0..TOPIC_NAMES.len() as u8 {
        let mut strong = 0;
        let mut weak = 0;
        let mut strong_personal = 0;
        let mut weak_personal = 0;
        for h in hits.iter().filter(|h| h.topic == topic) {
            let p = personal(h.start);
            match (h.weak, p) {
                (false, true) => strong_personal += 1,
                (false, false) => strong += 1,
                (true, true) => weak_personal += 1,
                (true, false) => weak += 1,
            }
        }
        if strong + weak + strong_personal + weak_personal == 0 {
            continue;
        }
        let mut w: f32 = if strong_personal >= 1 {
            if strong_personal + weak_personal >= 2 {
                0.6
            } else {
                0.55
            }
        } else if weak_personal >= 2 {
            0.5
        } else if weak_personal == 1 || strong >= 1 {
            0.35
        } else {
            0.15
        };
        if ctx.exercise {
            w = w.min(0.3);
        }
        for h in hits.iter().filter(|h| h.topic == topic) {
            out.push(Cand {
                label: label(topic),
                start: h.start,
                end: h.end,
                weight: w,
            });
        }
    }
}
