//! Tokens of one message: words, numbers, CJK runs and punctuation, with
//! byte offsets, letter case, sentence index and the small-lexicon flags.
//!
//! Whitespace is not a token; what lies between two tokens is read back from
//! the text when a detector needs it (`gap`).

use super::lexicon::{self, Key, Lexicon, flag};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Letters (any script but CJK) and underscores.
    Word,
    /// ASCII digits only.
    Num,
    /// Letters and digits mixed (`GB59IFUE40`, `x036`, `8x7B`).
    Alnum,
    /// A run of Han, kana or Hangul characters.
    Cjk,
    /// One punctuation or symbol character.
    Punct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Case {
    /// `word`
    Lower,
    /// `Word`, `McDowell`, or a single capital (`A`).
    Cap,
    /// `WORD` (two letters or more).
    Upper,
    /// Anything else (`iPhone`, digits, CJK, punctuation).
    Other,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Tok {
    pub kind: Kind,
    pub case: Case,
    pub start: usize,
    pub end: usize,
    /// Small-lexicon flags (words only).
    pub flags: u64,
    /// The first character (what a `Punct` token is).
    pub ch: char,
    /// Index of the sentence; a new one starts after `.`, `!`, `?`, their
    /// CJK forms and line breaks.
    pub sent: u32,
    /// A line break lies between the previous token and this one.
    pub nl_before: bool,
    /// Whitespace lies between the previous token and this one.
    pub space_before: bool,
    /// The word holds non-ASCII letters (diacritics, other scripts).
    pub non_ascii: bool,
    /// The lower-cased word packed for lexicon lookups (0: none or longer
    /// than 16 bytes).
    pub key: Key,
}

impl Tok {
    #[inline]
    pub(crate) fn is(&self, f: u64) -> bool {
        self.flags & f != 0
    }

    #[inline]
    pub(crate) fn is_punct(&self, c: char) -> bool {
        self.kind == Kind::Punct && self.ch == c
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }
}

/// True for Han ideographs, kana and Hangul: scripts written without spaces.
#[inline]
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF   // kana
        | 0x3400..=0x4DBF // Han extension A
        | 0x4E00..=0x9FFF // Han
        | 0xAC00..=0xD7AF // Hangul syllables
        | 0xF900..=0xFAFF // Han compatibility
        | 0x20000..=0x2FFFF)
}

const C_WORD: u8 = 1;
const C_ALPHA: u8 = 2;
const C_UPPER: u8 = 4;
const C_DIGIT: u8 = 8;
const C_LOWER: u8 = 16;
const C_UNDERSCORE: u8 = 32;

/// Character classes of the bytes; non-ASCII bytes have none.
const BYTE_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        t[i] = if c.is_ascii_uppercase() {
            C_WORD | C_ALPHA | C_UPPER
        } else if c.is_ascii_lowercase() {
            C_WORD | C_ALPHA | C_LOWER
        } else if c.is_ascii_digit() {
            C_WORD | C_DIGIT
        } else if c == b'_' {
            C_WORD | C_UNDERSCORE
        } else {
            0
        };
        i += 1;
    }
    t
};

#[inline]
fn is_word_char(c: char) -> bool {
    // The CJK range test first: it is cheap, `is_alphanumeric` is a table search.
    c == '_' || (!is_cjk(c) && c.is_alphanumeric())
}

#[inline]
fn char_at(text: &str, i: usize) -> char {
    text.get(i..).and_then(|s| s.chars().next()).unwrap_or(' ')
}

/// Counts gathered while tokenizing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stats {
    /// Capitalised words other than the pronoun `I`.
    pub capitals: usize,
    /// Numbers: digit runs and number words.
    pub numbers: usize,
}

/// Splits `text` into tokens, looking each word up in the small lexicon.
/// `buf` is scratch space for lower-casing.
pub(crate) fn tokenize(text: &str, lex: &Lexicon, out: &mut Vec<Tok>, buf: &mut String) -> Stats {
    out.clear();
    out.reserve(text.len() / 4);
    let mut stats = Stats::default();
    let b = text.as_bytes();
    let n = b.len();
    let mut i = 0;
    let mut sent = 0u32;
    let mut new_sent = false;
    let mut nl = false;
    let mut space = false;
    while i < n {
        let x = b[i];
        if x == b' ' {
            space = true;
            i += 1;
            continue;
        }
        let c = if x < 0x80 { x as char } else { char_at(text, i) };
        let clen = c.len_utf8();
        if c.is_whitespace() {
            if c == '\n' || c == '\r' {
                nl = true;
                new_sent = true;
            }
            space = true;
            i += clen;
            continue;
        }
        if new_sent {
            sent += 1;
            new_sent = false;
        }
        let start = i;
        let mut tok = Tok {
            kind: Kind::Punct,
            case: Case::Other,
            start,
            end: start + clen,
            flags: 0,
            ch: c,
            sent,
            nl_before: nl,
            space_before: space,
            non_ascii: false,
            key: 0,
        };
        nl = false;
        space = false;
        if is_word_char(c) {
            // Most words are ASCII: one tight pass that ORs the byte classes.
            let mut acc = 0u8;
            let mut j = i;
            while j < n {
                let cls = BYTE_CLASS[usize::from(b[j])];
                if cls & C_WORD == 0 {
                    break;
                }
                acc |= cls;
                j += 1;
            }
            let (j, kind, case, non_ascii, underscore) = if j >= n || b[j] < 0x80 {
                ascii_word(b, start, j, acc)
            } else {
                general_word(text, start)
            };
            tok.end = j;
            tok.non_ascii = non_ascii;
            tok.kind = kind;
            if tok.kind == Kind::Word {
                tok.case = case;
                let word = &text[start..j];
                tok.key = if non_ascii {
                    if lexicon::lower_into(word, buf, false) {
                        lexicon::pack(buf.as_bytes())
                    } else {
                        0
                    }
                } else {
                    lexicon::ascii_key_at(b, start, j)
                };
                tok.flags = if tok.key != 0 {
                    lex.small_key(tok.key)
                } else if word.len() <= 40 && lexicon::lower_into(word, buf, false) {
                    lex.small(buf)
                } else {
                    0
                };
                if tok.flags == 0 && underscore && lexicon::lower_into(word, buf, false) {
                    tok.flags = secret_key_suffix(buf);
                }
                if tok.case == Case::Cap && !(j - start == 1 && b[start] == b'I') {
                    stats.capitals += 1;
                }
                if tok.flags & flag::NUMBER_WORD != 0 {
                    stats.numbers += 1;
                }
            } else if tok.kind == Kind::Num {
                stats.numbers += 1;
            }
            i = j;
        } else if is_cjk(c) {
            let mut j = i + clen;
            while j < n && b[j] >= 0x80 {
                let d = char_at(text, j);
                if !is_cjk(d) {
                    break;
                }
                j += d.len_utf8();
            }
            tok.kind = Kind::Cjk;
            tok.end = j;
            tok.non_ascii = true;
            i = j;
        } else {
            i += clen;
            match c {
                '!' | '?' | '。' | '！' | '？' => new_sent = true,
                '.' => {
                    let next_space = i >= n || b[i].is_ascii_whitespace();
                    let abbrev = out.last().is_some_and(|p: &Tok| {
                        p.kind == Kind::Word
                            && (p.len() == 1
                                || p.is(flag::TITLE | flag::UNIT)
                                || (p.is(flag::STREET_SUFFIX) && p.len() <= 4))
                    });
                    if next_space && !abbrev {
                        new_sent = true;
                    }
                }
                _ => {}
            }
        }
        out.push(tok);
    }
    stats
}

/// Scans the word at `start`, ASCII or not: its end, kind, case (for words),
/// whether it holds non-ASCII letters, whether it holds an underscore.
fn general_word(text: &str, start: usize) -> (usize, Kind, Case, bool, bool) {
    let b = text.as_bytes();
    let n = b.len();
    let mut digits = 0usize;
    let mut letters = 0usize;
    let mut upper = 0usize;
    let mut non_ascii = false;
    let mut underscore = false;
    let mut first_upper = false;
    let mut j = start;
    while j < n {
        let y = b[j];
        if y < 0x80 {
            // ASCII fast path: one table lookup, no branches per class.
            let cls = BYTE_CLASS[usize::from(y)];
            if cls & C_WORD == 0 {
                break;
            }
            let letter = usize::from(cls & C_ALPHA != 0);
            let up = cls & C_UPPER != 0;
            if letters == 0 && letter == 1 {
                first_upper = up;
            }
            letters += letter;
            upper += usize::from(up);
            digits += usize::from(cls & C_DIGIT != 0);
            underscore |= y == b'_';
            j += 1;
            continue;
        }
        let d = char_at(text, j);
        if !is_word_char(d) {
            break;
        }
        if d.is_alphabetic() {
            let up = d.is_uppercase();
            if letters == 0 {
                first_upper = up;
            }
            letters += 1;
            upper += usize::from(up);
        } else if d.is_numeric() {
            digits += 1;
        }
        non_ascii = true;
        j += d.len_utf8();
    }
    let kind = if letters == 0 && !underscore {
        Kind::Num
    } else if digits == 0 {
        Kind::Word
    } else {
        Kind::Alnum
    };
    let case = if upper == 0 {
        Case::Lower
    } else if upper == letters && letters > 1 {
        Case::Upper
    } else if first_upper {
        Case::Cap
    } else {
        Case::Other
    };
    (j, kind, case, non_ascii, underscore)
}

/// Classifies the ASCII word `b[start..end]` from the OR of its byte classes
/// (`acc`), as [`general_word`] would.
#[inline]
fn ascii_word(b: &[u8], start: usize, end: usize, acc: u8) -> (usize, Kind, Case, bool, bool) {
    let underscore = acc & C_UNDERSCORE != 0;
    let has_upper = acc & C_UPPER != 0;
    let has_lower = acc & C_LOWER != 0;
    let kind = if !has_upper && !has_lower && !underscore {
        Kind::Num
    } else if acc & C_DIGIT == 0 {
        Kind::Word
    } else {
        Kind::Alnum
    };
    if kind != Kind::Word {
        return (end, kind, Case::Other, false, underscore);
    }
    let word = &b[start..end];
    let case = if !has_upper {
        Case::Lower
    } else if !has_lower
        && (!underscore && word.len() > 1 || word.iter().filter(|c| c.is_ascii_uppercase()).count() > 1)
    {
        Case::Upper
    } else if word
        .iter()
        .find(|c| c.is_ascii_alphabetic())
        .is_some_and(u8::is_ascii_uppercase)
    {
        Case::Cap
    } else {
        Case::Other
    };
    (end, kind, case, false, underscore)
}

/// `db_password`, `GITHUB_TOKEN`: identifiers whose last part names a secret.
fn secret_key_suffix(lower: &str) -> u64 {
    match lower.rsplit('_').next() {
        Some("password" | "passwd" | "pwd" | "secret" | "token" | "apikey" | "passphrase") => flag::SECRET_KEY,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ASCII fast path classifies every word as the general scan does.
    #[test]
    fn ascii_words_classified_like_the_general_scan() {
        for w in [
            "word",
            "Word",
            "WORD",
            "A",
            "a",
            "I",
            "iPhone",
            "McDowell",
            "_",
            "__init__",
            "_Foo",
            "DB_PASSWORD",
            "A_",
            "A_B",
            "x036",
            "GB59IFUE40",
            "8x7B",
            "12345",
            "0",
            "_1",
            "a_b_c",
        ] {
            let text = format!("{w} tail");
            let b = text.as_bytes();
            let end = w.len();
            let acc = b[..end].iter().fold(0u8, |a, &c| a | BYTE_CLASS[usize::from(c)]);
            let fast = ascii_word(b, 0, end, acc);
            let slow = general_word(&text, 0);
            assert_eq!(fast.0, slow.0, "{w}");
            assert_eq!(fast.1, slow.1, "{w}");
            assert_eq!(fast.3, slow.3, "{w}");
            assert_eq!(fast.4, slow.4, "{w}");
            if slow.1 == Kind::Word {
                assert_eq!(fast.2, slow.2, "{w}");
            }
        }
    }
}
