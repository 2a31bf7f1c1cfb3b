//! Street addresses in Latin script: house number + street word (`221 Baker
//! Street`), street prefixes (`Rue`, `Via`, `Calle`, `ul.`, `Jl.`/`Jalan`),
//! European street compounds (`Vesterskovvej 79`, `Hauptstraße 5`), post
//! boxes and military mail (`P.O. Box`, `PSC 1234, Box 5678`, `FPO AE
//! 12345`), units (`Suite 5`, `Apt. 3`) and postcodes next to a state or
//! country.
//!
//! Parts found near each other (across commas and line breaks) are merged
//! into one address; a lone weak part (a unit, a postcode) stays below the
//! sensitivity threshold.

use super::lexicon::{self, flag};
use super::person::NameTok;
use super::text::{Case, Kind};
use super::{Cand, Ctx, Label};

/// Endings of street names written as one word in Nordic, German, Dutch,
/// Hungarian, Polish, Finnish and Estonian.
const STREET_ENDINGS: &[&str] = &[
    "vej", "gade", "gata", "gatan", "gate", "vegen", "veien", "vägen", "väg", "stræde", "straße", "strasse", "weg",
    "laan", "straat", "plein", "gracht", "gasse", "allee", "platz", "damm", "utca", "útja", "ulica", "katu", "polku",
    "kuja", "tänav", "põik", "braut", "vegur", "stígur", "vænget", "bakken",
];

/// US states and Canadian provinces written as postal codes.
const STATE_CODES: &[&str] = &[
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS", "KY", "LA", "ME",
    "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA",
    "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "DC", "PR", "AA", "AE", "AP", "ON", "QC",
    "BC", "AB", "MB", "SK", "NS", "NB", "NL", "PE",
];

fn text<'t>(ctx: &Ctx<'t>, i: usize) -> &'t str {
    let t = &ctx.toks[i];
    &ctx.text[t.start..t.end]
}

fn is_num(ctx: &Ctx<'_>, i: usize, max_len: usize) -> bool {
    ctx.toks.get(i).is_some_and(|t| {
        (t.kind == Kind::Num && t.len() <= max_len)
            // "12a", "4B"
            || (t.kind == Kind::Alnum && t.len() <= max_len && ctx.text.as_bytes()[t.start].is_ascii_digit())
    })
}

fn word_eq(ctx: &Ctx<'_>, i: usize, words: &[&str]) -> bool {
    ctx.toks
        .get(i)
        .is_some_and(|t| t.kind == Kind::Word && words.iter().any(|w| text(ctx, i).eq_ignore_ascii_case(w)))
}

fn is_punct(ctx: &Ctx<'_>, i: usize, c: char) -> bool {
    ctx.toks.get(i).is_some_and(|t| t.is_punct(c))
}

/// Index after an optional full stop.
fn skip_dot(ctx: &Ctx<'_>, i: usize) -> usize {
    if is_punct(ctx, i, '.') { i + 1 } else { i }
}

/// A capitalised (or any, when `lower`) word usable inside a street name.
fn street_word(ctx: &Ctx<'_>, i: usize, lower: bool) -> bool {
    ctx.toks.get(i).is_some_and(|t| {
        t.kind == Kind::Word
            && (t.case == Case::Cap || t.case == Case::Upper || lower)
            && !t.is(flag::UNIT | flag::STOP)
    })
}

fn street_ending(ctx: &Ctx<'_>, i: usize, buf: &mut String) -> bool {
    let t = &ctx.toks[i];
    if t.kind != Kind::Word || t.len() < 5 {
        return false;
    }
    lexicon::lower_into(&ctx.text[t.start..t.end], buf, false);
    // The ending must follow a real stem: "Vesterskovvej", not "vej".
    STREET_ENDINGS
        .iter()
        .any(|e| buf.len() >= e.len() + 3 && super::person::ends_with(buf.as_bytes(), e.as_bytes()))
}

#[derive(Debug, Clone, Copy)]
struct Part {
    a: usize,
    b: usize,
    w: f32,
}

/// Scans one message for street addresses.
pub(crate) fn scan(ctx: &Ctx<'_>, info: &[NameTok], buf: &mut String, out: &mut Vec<Cand>) {
    let toks = ctx.toks;
    let n = toks.len();
    let mut parts: Vec<Part> = Vec::new();
    let mut i = 0;
    while i < n {
        if let Some(p) = part_at(ctx, info, i, buf) {
            i = p.b.max(i + 1);
            parts.push(p);
        } else {
            i += 1;
        }
    }
    if parts.is_empty() {
        return;
    }
    // Merge parts no more than a few tokens apart (commas, line breaks, a city name).
    let mut k = 0;
    while k < parts.len() {
        let mut cur = parts[k];
        let mut count = 1;
        let mut j = k + 1;
        while j < parts.len() && parts[j].a <= cur.b + 4 && toks[parts[j].a].start <= toks[cur.b - 1].end + 40 {
            cur.b = parts[j].b;
            cur.w = cur.w.max(parts[j].w);
            count += 1;
            j += 1;
        }
        if count > 1 {
            cur.w = (cur.w + 0.1 * (count - 1) as f32).clamp(0.6, 0.85);
        }
        let addr_cue = ctx.cue_before(toks[cur.a].start, 60, flag::ADDR_CUE)
            || (cur.a > 0 && word_eq(ctx, cur.a - 1, &["at", "on", "di"]) && cur.w >= 0.45);
        if addr_cue {
            cur.w = cur.w.max(0.65);
        }
        out.push(Cand {
            label: Label::StreetAddress,
            start: toks[cur.a].start,
            end: toks[cur.b - 1].end,
            weight: cur.w,
        });
        k = j;
    }
}

/// One address part starting at token `i`, if any.
fn part_at(ctx: &Ctx<'_>, info: &[NameTok], i: usize, buf: &mut String) -> Option<Part> {
    let toks = ctx.toks;
    let n = toks.len();
    let t = &toks[i];
    let part = |a: usize, b: usize, w: f32| Some(Part { a, b: b.min(n), w });
    // Fast exit for the bulk of prose: a lower-case word without address
    // flags can only start a one-word street ("hersnapvej 18").
    match t.kind {
        Kind::Word if t.case == Case::Lower && !ctx.lower_mode && !t.is(flag::STREET_PREFIX | flag::UNIT) => {
            return None;
        }
        Kind::Punct | Kind::Cjk => return None,
        _ => {}
    }

    if t.kind == Kind::Word
        && t.is(flag::BOX)
        && let Some(p) = box_at(ctx, i)
    {
        return Some(p);
    }
    // Units: Suite 5, Apt. 3, Apartment 12B.
    if t.kind == Kind::Word && t.is(flag::UNIT) && (t.case != Case::Lower || t.len() > 3) {
        let mut k = skip_dot(ctx, i + 1);
        if is_punct(ctx, k, '#') {
            k += 1;
        }
        if is_num(ctx, k, 6) && !word_eq(ctx, i, &["rt", "rw", "floor", "fl", "flat", "building", "unit"]) {
            return part(i, k + 1, 0.45);
        }
    }

    // US-style: 221 Baker Street, 2437 Main St, 3747 3911 fourth avenue.
    if is_num(ctx, i, 6) {
        let mut k = i + 1;
        if is_num(ctx, k, 6) {
            k += 1;
        }
        let words_from = k;
        let lower_ok = ctx.lower_mode && toks.get(k).is_some_and(|x| x.case == Case::Lower);
        // French and Portuguese order: "36 rue de Pologne", "12 Rua Augusta".
        if toks
            .get(k)
            .is_some_and(|x| x.kind == Kind::Word && x.is(flag::STREET_PREFIX) && x.len() >= 3 && !x.nl_before)
            && (toks[k].case != Case::Lower || ctx.lower_mode || word_eq(ctx, k, &["rue", "rua"]))
        {
            let mut m = k + 1;
            while m < n && m < k + 5 && toks[m].kind == Kind::Word && !toks[m].nl_before {
                m += 1;
            }
            if m > k + 1 {
                return part(i, m, 0.75);
            }
        }
        while k < n && k < words_from + 4 && street_word(ctx, k, lower_ok) && !toks[k].nl_before {
            let suffix = if toks[k].case == Case::Lower {
                flag::STREET_CORE
            } else {
                flag::STREET_SUFFIX
            };
            if toks[k].is(suffix) && k > words_from {
                let end = skip_dot(ctx, k + 1);
                return part(i, end, 0.75);
            }
            k += 1;
        }
        // European order after a number: "20789 Allika 46", "255 hersnapvej 18".
        if k > words_from && is_num(ctx, k, 5) && !toks[k].nl_before {
            let all_names = (words_from..k).all(|j| {
                let x = &toks[j];
                x.case != Case::Lower || lower_ok
            });
            let strange = (words_from..k)
                .any(|j| info.get(j).is_some_and(|nt| nt.unknown || nt.sur == 2) || street_ending(ctx, j, buf));
            if all_names && strange {
                return part(i, k + 1, 0.6);
            }
        }
        // Number then a street name at the end, after an address cue:
        // "The restaurant is at 9816 214 Pavlou Drandaki".
        if k > words_from && k - words_from <= 3 && i > 0 && !lower_ok {
            let strange =
                (words_from..k).all(|j| info.get(j).is_some_and(|nt| nt.unknown || nt.sur == 2 || nt.given == 2));
            let cue = word_eq(ctx, i - 1, &["at", "on"]) || ctx.cue_before(t.start, 60, flag::ADDR_CUE);
            let ends = toks.get(k).is_none_or(|x| x.kind == Kind::Punct || x.nl_before);
            if strange && cue && ends {
                return part(i, k, 0.6);
            }
        }
    }

    // Prefix streets: Rue de la Gare 5, Via Tasso 129, ul. Narewska 94, Jl. Sudirman No. 5, C/ Mayor 3.
    let slash_c = is_punct(ctx, i + 1, '/') && word_eq(ctx, i, &["C"]);
    if t.kind == Kind::Word && (t.is(flag::STREET_PREFIX) || slash_c) {
        // "via" and "pod" are English words too: only capitalised, and a number must follow.
        let mut k = if slash_c { i + 2 } else { skip_dot(ctx, i + 1) };
        if k == i + 1 && word_eq(ctx, i, &["ul", "jl", "jln", "al", "gg", "avda", "av"]) {
            // Abbreviations need their full stop.
            return None;
        }
        if t.case == Case::Lower && word_eq(ctx, i, &["via", "pod", "na", "al", "gang"]) {
            return None;
        }
        let from = k;
        while k < n && k < from + 5 && !toks[k].nl_before {
            if toks[k].kind == Kind::Word && !toks[k].is(flag::UNIT) && !word_eq(ctx, k, &["no", "nomor", "nr", "n"]) {
                k += 1;
                continue;
            }
            break;
        }
        if k > from {
            let mut m = k;
            if word_eq(ctx, m, &["no", "nomor", "nr", "n"]) {
                m = skip_dot(ctx, m + 1);
            }
            if is_num(ctx, m, 5) {
                let mut end = m + 1;
                if is_punct(ctx, end, '.') {
                    end += 1;
                }
                return part(i, end, 0.75);
            }
            // Jalan names are addresses even without a number.
            if word_eq(ctx, i, &["jl", "jln", "jalan"]) && toks[from].case == Case::Cap {
                return part(i, k, 0.6);
            }
        }
    }

    // One-word European streets: Vesterskovvej 79, Hauptstraße 5, Árpád fejedelem útja 62.
    if t.kind == Kind::Word
        && (t.case == Case::Cap || t.case == Case::Lower)
        && is_num(ctx, i + 1, 5)
        && street_ending(ctx, i, buf)
    {
        let k = i + 1;
        if !toks[k].nl_before {
            let w = if t.case == Case::Cap { 0.7 } else { 0.6 };
            return part(i, skip_dot(ctx, k + 1), w);
        }
        // "Koepenicker Str. 74" handled by the suffix rule below.
    }
    // Name + street type + number: Koepenicker Str. 74, Trenerys gate 232,
    // Hegedûs Gyula utca 76, Árpád fejedelem útja 62.
    if t.kind == Kind::Word && t.case == Case::Cap && !t.is(flag::STREET_SUFFIX | flag::STOP) {
        // The street type within the next three words, a number after it…
        let suffix_at =
            (i + 1..(i + 4).min(n)).find(|&k| toks[k].kind == Kind::Word && toks[k].is(flag::STREET_SUFFIX));
        let numbered = suffix_at.is_some_and(|k| is_num(ctx, skip_dot(ctx, k + 1), 5));
        // …and between the name and the type only capitalised words or no
        // English word ("fejedelem").
        let k = match suffix_at {
            Some(k)
                if numbered
                    && (i + 1..k).all(|j| {
                        toks[j].kind == Kind::Word
                            && !toks[j].nl_before
                            && (toks[j].case == Case::Cap
                                || (toks[j].key != 0 && ctx.lex.large_key(toks[j].key) & flag::WORD == 0))
                    }) =>
            {
                k
            }
            _ => n,
        };
        let suffix = |x: &super::text::Tok| {
            x.kind == Kind::Word
                && !x.nl_before
                && x.is(if x.case == Case::Lower {
                    flag::STREET_CORE
                } else {
                    flag::STREET_SUFFIX
                })
        };
        if toks.get(k).is_some_and(suffix) {
            let m = skip_dot(ctx, k + 1);
            if is_num(ctx, m, 5) {
                return part(i, skip_dot(ctx, m + 1), 0.75);
            }
        }
        // Capitalised words then a house number after an address cue: "is on Pod Floriánem 1677".
        let mut k = i;
        while k < n
            && k < i + 4
            && toks[k].kind == Kind::Word
            && (toks[k].case == Case::Cap || k > i)
            && !toks[k].nl_before
        {
            k += 1;
        }
        if k > i && is_num(ctx, k, 5) && !toks[k].nl_before {
            let strange =
                (i..k).any(|j| info.get(j).is_some_and(|nt| nt.unknown || nt.sur == 2) || street_ending(ctx, j, buf));
            let cue = ctx.cue_before(t.start, 60, flag::ADDR_CUE);
            let year =
                toks[k].len() == 4 && matches!(ctx.text.get(toks[k].start..toks[k].start + 2), Some("19" | "20"));
            if strange && !year && !ctx.exercise {
                return part(i, k + 1, if cue { 0.65 } else { 0.45 });
            }
        }
    }

    // Postcodes: "CO 70079", "Norway 64389", UK "SW1A 1AA", Canada "B0J 2H0".
    if t.kind == Kind::Word
        && t.case == Case::Upper
        && t.len() == 2
        && STATE_CODES.contains(&text(ctx, i))
        && is_num(ctx, i + 1, 5)
        && toks[i + 1].len() == 5
    {
        let mut end = i + 2;
        if is_punct(ctx, end, '-') && is_num(ctx, end + 1, 4) {
            end += 2;
        }
        return part(i, end, 0.5);
    }
    if t.kind == Kind::Word
        && t.case == Case::Cap
        && t.is(flag::NOT_NAME)
        && toks
            .get(i + 1)
            .is_some_and(|x| x.kind == Kind::Num && (4..=5).contains(&x.len()) && !x.nl_before)
    {
        let v = &ctx.text[toks[i + 1].start..toks[i + 1].end];
        let year = v.len() == 4 && (v.starts_with("19") || v.starts_with("20"));
        if !year {
            return part(i, i + 2, 0.5);
        }
    }
    if t.kind == Kind::Alnum && (2..=4).contains(&t.len()) && uk_or_ca_postcode(ctx, i) {
        return part(i, i + 2, 0.5);
    }
    None
}

/// Post boxes and military mail: `P.O. Box 149`, `PSC 0729, Box 5797`,
/// `Unit 8524 Box 0979`, `FPO AE 12345`, `USNS Name` before an FPO line.
fn box_at(ctx: &Ctx<'_>, i: usize) -> Option<Part> {
    let toks = ctx.toks;
    let n = toks.len();
    let t = &toks[i];
    let part = |a: usize, b: usize, w: f32| Some(Part { a, b: b.min(n), w });
    // P.O. Box 149, PO Box 5, Postbox 53.
    if word_eq(ctx, i, &["P"]) && is_punct(ctx, i + 1, '.') && word_eq(ctx, i + 2, &["O"]) {
        let k = skip_dot(ctx, i + 3);
        if word_eq(ctx, k, &["box"]) && is_num(ctx, k + 1, 8) {
            return part(i, k + 2, 0.75);
        }
    }
    if word_eq(ctx, i, &["PO", "postbox", "postfach", "apartado"]) {
        let k = if word_eq(ctx, i, &["PO"]) { i + 1 } else { i };
        let k = if word_eq(ctx, k, &["box"]) { k + 1 } else { k };
        if k > i && is_num(ctx, k, 8) {
            return part(i, k + 1, 0.75);
        }
    }
    // PSC 0729, Box 5797 / Unit 8524 Box 0979.
    if word_eq(ctx, i, &["PSC", "Unit"]) && is_num(ctx, i + 1, 6) {
        let mut k = i + 2;
        if is_punct(ctx, k, ',') {
            k += 1;
        }
        if word_eq(ctx, k, &["box"]) && is_num(ctx, k + 1, 6) {
            return part(i, k + 2, 0.75);
        }
    }
    // APO AE 12345 (military mail), and the ship line before it.
    if word_eq(ctx, i, &["APO", "FPO", "DPO"])
        && (t.case == Case::Upper || ctx.lower_mode)
        && word_eq(ctx, i + 1, &["AA", "AE", "AP"])
        && is_num(ctx, i + 2, 5)
    {
        return part(i, i + 3, 0.75);
    }
    if word_eq(ctx, i, &["USNS", "USS", "USNV", "USCGC"]) && toks.get(i + 1).is_some_and(|x| x.kind == Kind::Word) {
        // Only with the FPO line after it.
        if word_eq(ctx, i + 2, &["FPO", "APO", "DPO"]) {
            return part(i, i + 2, 0.6);
        }
    }

    None
}

/// UK (`SW1A 1AA`) and Canadian (`B0J 2H0`) postcodes: two tokens.
fn uk_or_ca_postcode(ctx: &Ctx<'_>, i: usize) -> bool {
    let Some(nx) = ctx.toks.get(i + 1) else { return false };
    if nx.kind != Kind::Alnum || nx.len() != 3 || !nx.space_before || nx.nl_before {
        return false;
    }
    let a = text(ctx, i).as_bytes();
    let b = &ctx.text.as_bytes()[nx.start..nx.end];
    let up = |c: &u8| c.is_ascii_uppercase();
    let dig = |c: &u8| c.is_ascii_digit();
    // Inward code: digit + two letters (UK) or digit letter digit (Canada).
    let uk_in = dig(&b[0]) && up(&b[1]) && up(&b[2]);
    let ca_in = dig(&b[0]) && up(&b[1]) && dig(&b[2]);
    let uk_out = up(&a[0]) && a.iter().all(|c| up(c) || dig(c)) && a.iter().any(dig) && a.len() >= 2;
    let ca_out = a.len() == 3 && up(&a[0]) && dig(&a[1]) && up(&a[2]);
    (uk_out && uk_in) || (ca_out && ca_in)
}
