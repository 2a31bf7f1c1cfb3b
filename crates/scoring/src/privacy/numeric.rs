//! Digit-based entities: payment cards, US SSN, China resident ID, Indonesian
//! NIK, IPv4 addresses and phone numbers.
//!
//! One byte pass finds "clusters": digit groups joined by single separators
//! (space, `-`, `.`, `/`, parentheses), optionally led by `+`. Each cluster is
//! then judged once, the most specific reading first: an IP, a date (skipped),
//! an SSN, a China ID, a card, a NIK, a phone number.

use super::lexicon::flag;
use super::text::Kind;
use super::validate::{card_network, cn_id_valid, luhn, nik_valid, ssn_valid};
use super::{Cand, Ctx, Label};

const MAX_DIGITS: usize = 24;
const MAX_GROUPS: usize = 8;

/// Separator kinds seen inside a cluster (bit set).
const SEP_SPACE: u8 = 1;
const SEP_DASH: u8 = 2;
const SEP_DOT: u8 = 4;
const SEP_SLASH: u8 = 8;
const SEP_PAREN: u8 = 16;

#[derive(Debug)]
struct Cluster {
    start: usize,
    end: usize,
    digits: [u8; MAX_DIGITS],
    nd: usize,
    groups: [u8; MAX_GROUPS],
    ng: usize,
    seps: u8,
    /// Led by `+` (international format).
    plus: bool,
    /// The first group is in parentheses: `(555) 123-4567`.
    paren_first: bool,
    /// The byte right after the cluster (`X` of a China ID, `:` of a time).
    next: u8,
}

impl Cluster {
    fn digits(&self) -> &[u8] {
        &self.digits[..self.nd]
    }

    fn groups(&self) -> &[u8] {
        &self.groups[..self.ng]
    }

    fn only_seps(&self, allowed: u8) -> bool {
        self.seps & !allowed == 0
    }

    fn group_value(&self, g: usize) -> u32 {
        let off: usize = self.groups[..g].iter().map(|&l| usize::from(l)).sum();
        let len = usize::from(self.groups[g]);
        self.digits[off..off + len]
            .iter()
            .fold(0u32, |a, &d| a * 10 + u32::from(d - b'0'))
    }
}

/// Parses the cluster starting at the digit `b[i]`; returns it and the index
/// just past it.
fn parse_cluster(b: &[u8], i: usize) -> (Option<Cluster>, usize) {
    let mut c = Cluster {
        start: i,
        end: i,
        digits: [0; MAX_DIGITS],
        nd: 0,
        groups: [0; MAX_GROUPS],
        ng: 0,
        seps: 0,
        plus: false,
        paren_first: false,
        next: 0,
    };
    if i > 0 && b[i - 1] == b'(' {
        c.paren_first = true;
        c.start = i - 1;
        if i > 1 && b[i - 2] == b'+' {
            c.plus = true;
            c.start = i - 2;
        }
    } else if i > 0 && b[i - 1] == b'+' {
        c.plus = true;
        c.start = i - 1;
    }
    let n = b.len();
    let mut j = i;
    let mut overflow = false;
    loop {
        // One group of digits.
        let gs = j;
        while j < n && b[j].is_ascii_digit() {
            if c.nd < MAX_DIGITS {
                c.digits[c.nd] = b[j];
                c.nd += 1;
            } else {
                overflow = true;
            }
            j += 1;
        }
        let glen = j - gs;
        if c.ng < MAX_GROUPS {
            c.groups[c.ng] = glen.min(255) as u8;
            c.ng += 1;
        } else {
            overflow = true;
        }
        c.end = j;
        // A separator run of at most two characters, then a digit.
        let mut k = j;
        let mut sep = 0u8;
        let mut count = 0;
        while k < n && count < 3 {
            let s = match b[k] {
                b' ' => SEP_SPACE,
                b'-' => SEP_DASH,
                b'.' => SEP_DOT,
                b'/' => SEP_SLASH,
                b'(' | b')' => SEP_PAREN,
                _ => break,
            };
            sep |= s;
            count += 1;
            k += 1;
        }
        // ") " and " (" are fine; "  " or ".." are not separators.
        let ok = match count {
            1 => true,
            2 => sep & SEP_PAREN != 0 || sep == SEP_SPACE | SEP_DASH,
            3 => sep == SEP_SPACE | SEP_DASH || sep == SEP_SPACE | SEP_PAREN,
            _ => false,
        };
        // "4064557646766436702 (19 digits)": a long number does not run into a
        // parenthesis; "+41 (0)85" and "1 (555)" do.
        let opens = b[j..k].contains(&b'(');
        if ok && k < n && b[k].is_ascii_digit() && !(opens && glen > 4) {
            c.seps |= sep;
            j = k;
            continue;
        }
        break;
    }
    c.next = b.get(c.end).copied().unwrap_or(b' ');
    if overflow {
        return (None, j);
    }
    (Some(c), j)
}

/// Scans the message for digit-based entities. Clusters start at number
/// tokens; the bytes between are never looked at.
pub(crate) fn scan(ctx: &Ctx<'_>, out: &mut Vec<Cand>) {
    let b = ctx.text.as_bytes();
    let mut done = 0;
    for t in ctx.toks {
        let i = t.start;
        if i < done || !matches!(t.kind, Kind::Num | Kind::Alnum) || !b[i].is_ascii_digit() {
            continue;
        }
        // Money and identifiers: `$1 234`, `_1`.
        if i > 0 && (b[i - 1] == b'$' || b[i - 1] == b'_') {
            continue;
        }
        // "3.5.1" after a digit and a dot: the tail of a decimal or a version.
        if i > 1 && (b[i - 1] == b'.' || b[i - 1] == b',') && b[i - 2].is_ascii_digit() {
            continue;
        }
        let (cluster, next) = parse_cluster(b, i);
        done = next;
        let Some(c) = cluster else { continue };
        // Glued to letters on the right: `123abc` (but `…6138x036`, `…002X`).
        if c.next.is_ascii_alphabetic() && !matches!(c.next, b'x' | b'X') {
            continue;
        }
        judge(ctx, &c, out);
    }
}

fn judge(ctx: &Ctx<'_>, c: &Cluster, out: &mut Vec<Cand>) {
    let d = c.digits();
    let nd = d.len();
    let g = c.groups();
    let push = |out: &mut Vec<Cand>, label, start, end, weight| {
        out.push(Cand {
            label,
            start,
            end,
            weight,
        })
    };

    // IPv4: four dotted groups of at most three digits, each ≤ 255.
    if c.only_seps(SEP_DOT) && g.len() == 4 && g.iter().all(|&l| (1..=3).contains(&l)) && !c.plus {
        let v: [u32; 4] = [c.group_value(0), c.group_value(1), c.group_value(2), c.group_value(3)];
        if v.iter().all(|&x| x <= 255) && c.next != b'.' {
            let private = v[0] == 10
                || v[0] == 127
                || v[0] == 0
                || (v[0] == 192 && v[1] == 168)
                || (v[0] == 172 && (16..=31).contains(&v[1]))
                || (v[0] == 169 && v[1] == 254)
                || v[0] >= 224;
            push(out, Label::IpAddress, c.start, c.end, if private { 0.35 } else { 0.65 });
        }
        return;
    }
    if nd < 7 {
        return;
    }
    // A time follows (`2003-08-28 12:13:52`): a timestamp, not a number.
    if c.next == b':' {
        return;
    }
    if is_date_like(c) {
        return;
    }

    let card_cue = ctx.cue_before(c.start, 60, flag::CARD_CUE);
    let id_cue = ctx.cue_before(c.start, 40, flag::ID_CUE)
        || ctx.cjk_cue_before(c.start, &["身份证", "身份證", "证件号", "證件號"]);

    // US SSN: 3-2-4 with dashes or spaces, or nine digits after a cue.
    if nd == 9 && !c.plus && !c.paren_first {
        let shaped = g == [3, 2, 4] && (c.only_seps(SEP_DASH) || c.only_seps(SEP_SPACE));
        let cue = ctx.cue_before(c.start, 40, flag::SSN_CUE);
        if (shaped || (g.len() == 1 && cue)) && ssn_valid(d) {
            push(out, Label::UsSsn, c.start, c.end, if cue { 0.95 } else { 0.9 });
            return;
        }
    }

    // China resident ID: 17 digits and a check `X`, or 18 digits.
    if g.len() == 1 && (nd == 17 && matches!(c.next, b'X' | b'x') || nd == 18) {
        let mut id = [0u8; 18];
        id[..nd].copy_from_slice(d);
        if nd == 17 {
            id[17] = c.next;
        }
        if cn_id_valid(&id) {
            push(out, Label::CnResidentId, c.start, c.start + 18, 0.95);
            return;
        }
    }

    // Payment card: 12–19 digits, Luhn, a known network (12 digits only
    // after a card cue), grouped as cards are printed.
    if (12..=19).contains(&nd) && !c.plus && !c.paren_first && card_grouping(c) && luhn(d) {
        let net = card_network(d);
        let nik_first = nd == 16 && id_cue && nik_valid(d);
        if !nik_first && (net.is_some() && (nd >= 13 || card_cue) || card_cue && nd >= 13) {
            push(
                out,
                Label::CreditCard,
                c.start,
                c.end,
                if net.is_some() { 0.95 } else { 0.9 },
            );
            return;
        }
    }

    // Indonesian NIK: 16 digits with a real province and date.
    if nd == 16 && g.len() == 1 && nik_valid(d) {
        push(out, Label::IdNik, c.start, c.end, if id_cue { 0.95 } else { 0.85 });
        return;
    }

    if let Some(w) = phone_weight(ctx, c) {
        let mut end = c.end;
        // Extension: `463-612-6138x036`.
        let b = ctx.text.as_bytes();
        if matches!(c.next, b'x' | b'X') && b.get(end + 1).is_some_and(u8::is_ascii_digit) {
            end += 1;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
        }
        push(out, Label::Phone, c.start, end, w);
    }
}

/// Dates and ranges of years: `2003-08-28`, `12/31/1999`, `1990-2000`.
fn is_date_like(c: &Cluster) -> bool {
    let g = c.groups();
    if c.plus || c.paren_first {
        return false;
    }
    let year = |v: u32| (1800..=2100).contains(&v);
    match g {
        [4, 2, 2] | [4, 1, 1] | [4, 1, 2] | [4, 2, 1] => {
            year(c.group_value(0)) && (1..=12).contains(&c.group_value(1)) && (1..=31).contains(&c.group_value(2))
        }
        [1 | 2, 1 | 2, 4] => {
            let (a, b) = (c.group_value(0), c.group_value(1));
            year(c.group_value(2)) && (1..=31).contains(&a) && (1..=31).contains(&b) && (a <= 12 || b <= 12)
        }
        [4, 4] => year(c.group_value(0)) && year(c.group_value(1)),
        [4, 2] => year(c.group_value(0)),
        _ => {
            // Lists of years: "1990 2000 2010".
            g.iter().all(|&l| l == 4) && (0..g.len()).all(|i| year(c.group_value(i)))
        }
    }
}

/// Cards are written as one run or in groups of four (Amex 4-6-5, Diners 4-6-4).
fn card_grouping(c: &Cluster) -> bool {
    let g = c.groups();
    if g.len() == 1 {
        return true;
    }
    if !(c.only_seps(SEP_SPACE) || c.only_seps(SEP_DASH)) {
        return false;
    }
    matches!(g, [4, 6, 5] | [4, 6, 4])
        || (g[..g.len() - 1].iter().all(|&l| l == 4) && (1..=4).contains(&g[g.len() - 1]))
}

/// The weight of a cluster read as a phone number, if it is one.
fn phone_weight(ctx: &Ctx<'_>, c: &Cluster) -> Option<f32> {
    let d = c.digits();
    let nd = d.len();
    let g = c.groups();
    if !(7..=15).contains(&nd) || c.seps & SEP_SLASH != 0 {
        return None;
    }
    let cn_mobile = |s: &[u8]| s.len() == 11 && s[0] == b'1' && (b'3'..=b'9').contains(&s[1]);
    let id_mobile = |s: &[u8]| (10..=13).contains(&s.len()) && s.starts_with(b"08") && s[2] != b'0';
    if c.plus {
        if d.starts_with(b"86") && cn_mobile(&d[2..]) {
            return Some(0.85);
        }
        if d.starts_with(b"62") && nd >= 10 && d[2] == b'8' {
            return Some(0.85);
        }
        if (8..=15).contains(&nd) && d[0] != b'0' {
            return Some(0.8);
        }
        return None;
    }
    // A group of one digit only in front ("1 800…", "0 …").
    if g.len() > 1 && g[1..].iter().any(|&l| l < 2) {
        return None;
    }
    // Money and quantities: "$1 234 567", "1.234.567".
    if c.start > 0 && matches!(ctx.text.as_bytes()[c.start - 1], b'$' | b'#') {
        return None;
    }
    if c.only_seps(SEP_DOT) && g.len() > 1 && g[1..].iter().all(|&l| l == 3) && g[0] <= 3 {
        return None;
    }
    let cue = ctx.cue_before(c.start, 48, flag::PHONE_CUE)
        || ctx.cue_after(c.end, 14, flag::PHONE_CUE)
        || ctx.cjk_cue_before(
            c.start,
            &[
                "电话", "電話", "手机", "手機", "联系", "聯繫", "号码", "號碼", "致电", "微信",
            ],
        );
    // One run of digits: only the shapes of mobile numbers, or after a cue.
    if g.len() == 1 {
        if cn_mobile(d) || id_mobile(d) || (nd == 11 && d.starts_with(b"07")) {
            return Some(0.75);
        }
        if cue && (7..=13).contains(&nd) {
            return Some(0.7);
        }
        return None;
    }
    // North American: (555) 123-4567, 555-123-4567, 555.123.4567, 1-555-…
    let nanp_digits = if nd == 11 && d[0] == b'1' { &d[1..] } else { d };
    let nanp_groups = matches!(g, [3, 3, 4] | [1, 3, 3, 4]);
    if nanp_digits.len() == 10 && nanp_groups && nanp_digits[0] >= b'2' && nanp_digits[3] >= b'2' {
        return Some(0.75);
    }
    // Mobile shapes with spaces: 138 1234 5678, 0812-3456-7890.
    let mut flat = [0u8; MAX_DIGITS];
    flat[..nd].copy_from_slice(d);
    if cn_mobile(&flat[..nd]) || id_mobile(&flat[..nd]) {
        return Some(0.75);
    }
    if cue {
        return Some(0.7);
    }
    // Without a cue: trunk prefix 0 or a bracketed area code, three groups or more.
    let trunk = d[0] == b'0';
    if nd >= 9 && (c.paren_first || (trunk && g.len() >= 2)) {
        return Some(0.6);
    }
    None
}
