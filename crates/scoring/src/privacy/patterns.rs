//! Character-shape entities: e-mail addresses, IBANs, IPv6 addresses and
//! secrets (provider API keys, private keys, JWTs, `password=` pairs).
//!
//! Each starts from a cheap anchor (`@`, `:`, two capitals and two digits, a
//! key prefix at a token start) and validates outward; no regex.

use std::net::Ipv6Addr;

use super::lexicon::flag;
use super::text::Kind;
use super::validate::{iban_length, iban_mod97};
use super::{Cand, Ctx, Label};

#[inline]
fn is_local_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

#[inline]
fn is_domain_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'.'
}

/// E-mail addresses: `local@domain.tld`.
pub(crate) fn emails(ctx: &Ctx<'_>, out: &mut Vec<Cand>) {
    let b = ctx.text.as_bytes();
    for at in memchr::memchr_iter(b'@', b) {
        let mut s = at;
        // Internationalised local parts (RFC 6531) may hold letters with
        // diacritics, but CJK text runs straight into an address.
        loop {
            if s > 0 && is_local_char(b[s - 1]) {
                s -= 1;
                continue;
            }
            match ctx.text[..s].chars().next_back() {
                Some(c) if !c.is_ascii() && c.is_alphanumeric() && !super::text::is_cjk(c) => s -= c.len_utf8(),
                _ => break,
            }
        }
        while s < at && matches!(b[s], b'.' | b'-' | b'+') {
            s += 1;
        }
        if s == at {
            continue;
        }
        let mut e = at + 1;
        while e < b.len() && is_domain_char(b[e]) {
            e += 1;
        }
        while e > at + 1 && matches!(b[e - 1], b'.' | b'-') {
            e -= 1;
        }
        let domain = &b[at + 1..e];
        let Some(dot) = domain.iter().rposition(|&c| c == b'.') else {
            continue;
        };
        let tld = &domain[dot + 1..];
        if dot == 0
            || tld.len() < 2
            || !tld.iter().all(u8::is_ascii_alphabetic)
            || domain.windows(2).any(|w| w == b"..")
        {
            continue;
        }
        out.push(Cand {
            label: Label::Email,
            start: s,
            end: e,
            weight: 0.75,
        });
    }
}

/// IBANs, compact (`GB82WEST12345698765432`) or printed in groups of four.
pub(crate) fn ibans(ctx: &Ctx<'_>, out: &mut Vec<Cand>) {
    let b = ctx.text.as_bytes();
    for t in ctx.toks {
        // The country code and check digits make the first token alphanumeric.
        if t.kind != Kind::Alnum || t.len() < 4 {
            continue;
        }
        let s = t.start;
        let head = &b[s..s + 4];
        if !(head[0].is_ascii_uppercase()
            && head[1].is_ascii_uppercase()
            && head[2].is_ascii_digit()
            && head[3].is_ascii_digit())
        {
            continue;
        }
        let Some(want) = iban_length(&head[..2]) else { continue };
        let mut buf = [0u8; 34];
        let mut n = 0;
        let mut j = s;
        let mut group = 0;
        let mut end = s;
        while j < b.len() && n < want {
            let c = b[j];
            if c.is_ascii_alphanumeric() {
                buf[n] = c.to_ascii_uppercase();
                n += 1;
                group += 1;
                j += 1;
                end = j;
            } else if c == b' ' && group == 4 && b.get(j + 1).is_some_and(u8::is_ascii_alphanumeric) {
                group = 0;
                j += 1;
            } else {
                break;
            }
        }
        // The number must end here, not run on into more characters.
        if n != want || b.get(end).is_some_and(u8::is_ascii_alphanumeric) {
            continue;
        }
        if iban_mod97(&buf[..n]) {
            out.push(Cand {
                label: Label::Iban,
                start: s,
                end,
                weight: 0.95,
            });
        }
    }
}

/// IPv6 addresses, validated by the standard library's parser.
pub(crate) fn ipv6(ctx: &Ctx<'_>, out: &mut Vec<Cand>) {
    let b = ctx.text.as_bytes();
    let mut done = 0;
    for colon in memchr::memchr_iter(b':', b) {
        if colon < done {
            continue;
        }
        let is_v6 = |c: u8| c.is_ascii_hexdigit() || c == b':' || c == b'.';
        let mut s = colon;
        while s > 0 && is_v6(b[s - 1]) {
            s -= 1;
        }
        let mut e = colon;
        while e < b.len() && is_v6(b[e]) {
            e += 1;
        }
        done = e;
        while e > s && b[e - 1] == b'.' {
            e -= 1;
        }
        // Not part of a longer identifier (`std::vector`, `Foo::bar`).
        if s > 0 && (b[s - 1].is_ascii_alphanumeric() || b[s - 1] == b'_') {
            continue;
        }
        if b.get(e).is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_') {
            continue;
        }
        let cand = &b[s..e];
        let colons = cand.iter().filter(|&&c| c == b':').count();
        let hex = cand.iter().filter(|c| c.is_ascii_hexdigit()).count();
        if colons < 2 || hex < 4 {
            continue;
        }
        let Ok(txt) = std::str::from_utf8(cand) else { continue };
        if txt.parse::<Ipv6Addr>().is_ok() {
            // Loopback and link-local addresses say nothing about a person.
            let local = txt == "::1" || txt.to_ascii_lowercase().starts_with("fe80");
            out.push(Cand {
                label: Label::IpAddress,
                start: s,
                end: e,
                weight: if local { 0.35 } else { 0.65 },
            });
        }
    }
}

/// How a secret prefix continues.
#[derive(Debug, Clone, Copy)]
enum Tail {
    /// At least `min` characters of `[A-Za-z0-9_-]`.
    Token { min: usize },
    /// Exactly `len` characters of `[A-Z0-9]` (AWS access key ids).
    Upper { len: usize },
    /// A PEM private key block, up to its END line.
    Pem,
    /// A JSON Web Token: three base64url parts.
    Jwt,
}

const SECRET_PREFIXES: &[(&str, Tail)] = &[
    ("sk-ant-", Tail::Token { min: 20 }),
    ("sk-proj-", Tail::Token { min: 20 }),
    ("sk-", Tail::Token { min: 20 }),
    ("sk_live_", Tail::Token { min: 16 }),
    ("rk_live_", Tail::Token { min: 16 }),
    ("sk_test_", Tail::Token { min: 16 }),
    ("whsec_", Tail::Token { min: 20 }),
    ("AKIA", Tail::Upper { len: 16 }),
    ("ASIA", Tail::Upper { len: 16 }),
    ("ghp_", Tail::Token { min: 30 }),
    ("gho_", Tail::Token { min: 30 }),
    ("ghu_", Tail::Token { min: 30 }),
    ("ghs_", Tail::Token { min: 30 }),
    ("ghr_", Tail::Token { min: 30 }),
    ("github_pat_", Tail::Token { min: 30 }),
    ("glpat-", Tail::Token { min: 20 }),
    ("AIza", Tail::Token { min: 30 }),
    ("xoxb-", Tail::Token { min: 10 }),
    ("xoxp-", Tail::Token { min: 10 }),
    ("xoxa-", Tail::Token { min: 10 }),
    ("xoxr-", Tail::Token { min: 10 }),
    ("xoxs-", Tail::Token { min: 10 }),
    ("xapp-", Tail::Token { min: 10 }),
    ("hf_", Tail::Token { min: 30 }),
    ("npm_", Tail::Token { min: 30 }),
    ("-----BEGIN ", Tail::Pem),
    ("eyJ", Tail::Jwt),
];

/// Provider keys, private keys, JWTs and `password=` pairs. Keys start at a
/// token (a word, or the dashes of a PEM header), so only token starts are
/// compared with the prefixes, the longest prefix first.
pub(crate) fn secrets(ctx: &Ctx<'_>, out: &mut Vec<Cand>) {
    let b = ctx.text.as_bytes();
    for t in ctx.toks {
        let two = [b[t.start], b.get(t.start + 1).copied().unwrap_or(0)];
        let maybe = match t.kind {
            Kind::Word | Kind::Alnum => matches!(
                &two,
                b"sk"
                    | b"rk"
                    | b"wh"
                    | b"AK"
                    | b"AS"
                    | b"gh"
                    | b"gi"
                    | b"gl"
                    | b"AI"
                    | b"xo"
                    | b"xa"
                    | b"hf"
                    | b"np"
                    | b"ey"
            ),
            Kind::Punct => &two == b"--",
            _ => false,
        };
        if !maybe {
            continue;
        }
        let rest = &b[t.start..];
        let Some(&(prefix, tail)) = SECRET_PREFIXES.iter().find(|(p, _)| rest.starts_with(p.as_bytes())) else {
            continue;
        };
        if let Some(end) = tail_end(b, t.start + prefix.len(), tail) {
            out.push(Cand {
                label: Label::Secret,
                start: t.start,
                end,
                weight: 0.95,
            });
        }
    }
    key_values(ctx, out);
}

#[inline]
fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn tail_end(b: &[u8], from: usize, tail: Tail) -> Option<usize> {
    match tail {
        Tail::Token { min } => {
            let mut e = from;
            while e < b.len() && is_token_char(b[e]) {
                e += 1;
            }
            let body = &b[from..e];
            // Real keys mix letters and digits; `sk-this-is-a-long-slug` does not.
            let digits = body.iter().filter(|c| c.is_ascii_digit()).count();
            let letters = body.iter().filter(|c| c.is_ascii_alphabetic()).count();
            (body.len() >= min && digits >= 2 && letters >= 4).then_some(e)
        }
        Tail::Upper { len } => {
            let body = b.get(from..from + len)?;
            let ok = body.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            let ends = b.get(from + len).is_none_or(|c| !c.is_ascii_alphanumeric());
            (ok && ends).then_some(from + len)
        }
        Tail::Pem => {
            let rest = &b[from..];
            let line_end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            let line = &rest[..line_end];
            if !line.ends_with(b"PRIVATE KEY-----") && !line.ends_with(b"PRIVATE KEY-----\r") {
                return None;
            }
            let end = memchr::memmem::find(rest, b"-----END ")
                .and_then(|e| memchr::memmem::find(&rest[e + 9..], b"-----").map(|f| from + e + 9 + f + 5))
                .unwrap_or(b.len());
            Some(end)
        }
        Tail::Jwt => {
            let mut e = from;
            let mut dots = 0;
            let mut part = 3; // "eyJ" counts towards the first part
            let mut min_part = usize::MAX;
            while e < b.len() && (is_token_char(b[e]) || b[e] == b'.') {
                if b[e] == b'.' {
                    dots += 1;
                    min_part = min_part.min(part);
                    part = 0;
                } else {
                    part += 1;
                }
                e += 1;
            }
            (dots == 2 && min_part >= 8 && part >= 8).then_some(e)
        }
    }
}

/// Values that stand for a secret rather than being one.
fn is_placeholder(v: &[u8]) -> bool {
    let lower: Vec<u8> = v.iter().map(u8::to_ascii_lowercase).collect();
    const WORDS: [&[u8]; 16] = [
        b"your",
        b"xxx",
        b"***",
        b"...",
        b"example",
        b"placeholder",
        b"changeme",
        b"password",
        b"secret",
        b"token",
        b"env",
        b"none",
        b"null",
        b"undefined",
        b"redacted",
        b"dummy",
    ];
    WORDS.iter().any(|w| memchr::memmem::find(&lower, w).is_some())
        || v.iter().any(|c| matches!(c, b'<' | b'>' | b'{' | b'}' | b'(' | b')' | b'[' | b']'))
        // Variables: `$PASSWORD`, `%PASSWORD%`.
        || v.first().is_some_and(|c| matches!(c, b'$' | b'%'))
        || matches!(lower.as_slice(), b"true" | b"false")
}

/// `password=hunter2`, `"secret": "s3cr3t!"`, `my password is hunter2`.
fn key_values(ctx: &Ctx<'_>, out: &mut Vec<Cand>) {
    let b = ctx.text.as_bytes();
    for (i, t) in ctx.toks.iter().enumerate() {
        if t.kind != Kind::Word || !t.is(flag::SECRET_KEY) {
            continue;
        }
        let mut j = t.end;
        // The key may be quoted: "password": "…".
        if j < b.len() && matches!(b[j], b'"' | b'\'') {
            j += 1;
        }
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        let mut assigned = false;
        if j < b.len() && matches!(b[j], b'=' | b':') {
            assigned = true;
            j += 1;
            if j < b.len() && matches!(b[j], b'=' | b'>') {
                j += 1;
            }
        } else if ctx.text[j..].starts_with("is ")
            && i > 0
            && ctx.toks[i - 1].kind == Kind::Word
            && ctx.toks[i - 1].is(flag::FIRST_PERSON)
        {
            assigned = true;
            j += 3;
        }
        if !assigned {
            continue;
        }
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        let quoted = j < b.len() && matches!(b[j], b'"' | b'\'' | b'`');
        if quoted {
            j += 1;
        }
        let vs = j;
        while j < b.len() && !b[j].is_ascii_whitespace() && !matches!(b[j], b'"' | b'\'' | b'`' | b',' | b';') {
            j += 1;
        }
        let mut ve = j;
        // A sentence full stop is not part of the value.
        while ve > vs && b[ve - 1] == b'.' && !quoted {
            ve -= 1;
        }
        let v = &b[vs..ve];
        if v.is_empty() || is_placeholder(v) {
            continue;
        }
        let ok = if quoted {
            v.len() >= 4
        } else {
            // Unquoted code (`token = get_token`) is an identifier, not a value:
            // a literal has a digit or a symbol, or mixed case.
            let has_digit = v.iter().any(u8::is_ascii_digit);
            let has_symbol = v.iter().any(|c| !c.is_ascii_alphanumeric() && *c != b'_' && *c != b'.');
            let has_upper = v.iter().any(u8::is_ascii_uppercase);
            let has_lower = v.iter().any(u8::is_ascii_lowercase);
            let attribute = v
                .iter()
                .position(|&c| c == b'.')
                .is_some_and(|p| v.get(p + 1).is_some_and(u8::is_ascii_alphabetic));
            v.len() >= 6 && !attribute && (has_digit || has_symbol || (has_upper && has_lower))
        };
        if ok {
            out.push(Cand {
                label: Label::Secret,
                start: vs,
                end: ve,
                weight: 0.9,
            });
        }
    }
}
