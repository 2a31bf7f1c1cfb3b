//! Chinese text: person names after cue phrases (`我叫`, `我的名字是`,
//! `姓名：`) or before honorifics (`王先生`, `李女士`), street addresses
//! (`建国路88号`, `…省…市…区`), and topic keywords. One Aho-Corasick pass
//! over the message finds every marker; it runs only when the message holds
//! CJK characters.

use std::collections::HashSet;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use super::lexicon::{self, FxBuild};
use super::text::Kind;
use super::{Cand, Ctx, Label};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    /// A name follows; `strong`: no surname check needed.
    NameCue { strong: bool },
    /// A name precedes (`先生`).
    Honorific,
    /// A topic keyword (index into `TOPIC_NAMES`), weak or not.
    Topic { topic: u8, weak: bool },
    /// An address follows (`地址`, `住在`).
    AddrCue,
}

/// Markers and where they matched in the message.
pub(crate) struct Cjk {
    ac: Option<AhoCorasick>,
    markers: Vec<Marker>,
    surnames: HashSet<&'static str, FxBuild>,
}

/// A topic keyword hit: topic index, weak, byte span.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TopicHit {
    pub topic: u8,
    pub weak: bool,
    pub start: usize,
    pub end: usize,
}

const NAME_CUES: &[(&str, bool)] = &[
    ("我叫", true),
    ("我的名字是", true),
    ("我的名字叫", true),
    ("名叫", true),
    ("叫做", false),
    ("姓名：", true),
    ("姓名:", true),
    ("姓名是", true),
    ("我是", false),
    ("本人", false),
];

const HONORIFICS: &[&str] = &[
    "先生", "女士", "小姐", "老师", "老師", "经理", "經理", "律师", "律師", "教授", "医生", "醫生", "同学", "同學",
    "阿姨", "总监", "總監", "太太",
];

const ADDR_CUES: &[&str] = &["地址", "住址", "住在", "寄到", "收货地址", "收貨地址", "家住"];

/// Characters that end a Chinese given name: particles, verbs and
/// punctuation that follow names.
fn ends_name(c: char) -> bool {
    !super::text::is_cjk(c)
        || matches!(
            c,
            '的' | '了'
                | '是'
                | '在'
                | '和'
                | '与'
                | '與'
                | '今'
                | '年'
                | '我'
                | '你'
                | '他'
                | '她'
                | '，'
                | '。'
                | '啊'
                | '呀'
                | '吗'
                | '嗎'
                | '呢'
                | '住'
                | '来'
                | '來'
                | '从'
                | '從'
                | '也'
                | '都'
                | '很'
                | '想'
                | '要'
                | '请'
                | '請'
                | '说'
                | '說'
                | '现'
                | '現'
                | '岁'
                | '歲'
                | '就'
                | '还'
                | '還'
                | '、'
                | '！'
                | '？'
        )
}

impl Cjk {
    pub(crate) fn new() -> Self {
        let mut pats: Vec<&str> = Vec::new();
        let mut markers = Vec::new();
        for &(p, strong) in NAME_CUES {
            pats.push(p);
            markers.push(Marker::NameCue { strong });
        }
        for &p in HONORIFICS {
            pats.push(p);
            markers.push(Marker::Honorific);
        }
        for &p in ADDR_CUES {
            pats.push(p);
            markers.push(Marker::AddrCue);
        }
        for (topic, term, weak) in lexicon::topic_terms(lexicon::TOPICS_ZH) {
            pats.push(term);
            markers.push(Marker::Topic {
                topic: topic as u8,
                weak,
            });
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&pats)
            .ok();
        Cjk {
            ac,
            markers,
            surnames: lexicon::cn_surnames(),
        }
    }

    fn is_surname(&self, s: &str) -> bool {
        self.surnames.contains(s)
    }

    /// A name starting at byte `at`: surname (one or two characters) and one
    /// or two given characters, ending at a particle or punctuation. Returns
    /// the end byte.
    fn name_at(&self, text: &str, at: usize, need_surname: bool) -> Option<usize> {
        let rest = text.get(at..)?;
        let chars: Vec<(usize, char)> = rest.char_indices().take(5).collect();
        let han = chars.iter().take_while(|(_, c)| super::text::is_cjk(*c)).count();
        if han < 2 {
            return None;
        }
        let sur_len = if chars.len() >= 2 && self.is_surname(&rest[..chars.get(2).map_or(rest.len(), |c| c.0)]) {
            2
        } else if self.is_surname(&rest[..chars[1].0]) {
            1
        } else if need_surname {
            return None;
        } else {
            1
        };
        // Given name: one or two characters, then a boundary.
        for given in [2usize, 1] {
            let len = sur_len + given;
            if len > han {
                continue;
            }
            let after = chars.get(len).map(|c| c.1);
            let inside_ok = chars.iter().take(len).skip(sur_len).all(|(_, c)| !ends_name(*c));
            if inside_ok && after.is_none_or(ends_name) {
                let end = chars.get(len).map_or(rest.len(), |c| c.0);
                return Some(at + end);
            }
        }
        None
    }

    /// A name ending right before the honorific at byte `at`: one to three
    /// characters starting with a surname.
    fn name_before(&self, text: &str, at: usize) -> Option<usize> {
        let head = text.get(..at)?;
        let chars: Vec<(usize, char)> = head.char_indices().rev().take(3).collect();
        // chars[0] is the last character before the honorific.
        for len in [3usize, 2, 1] {
            if chars.len() < len {
                continue;
            }
            let start = chars[len - 1].0;
            let slice = &head[start..];
            if !slice.chars().all(super::text::is_cjk) || slice.chars().any(ends_name) {
                continue;
            }
            let first: String = slice.chars().take(1).collect();
            let first2: String = slice.chars().take(2).collect();
            if self.is_surname(&first) || (len >= 2 && self.is_surname(&first2)) {
                return Some(start);
            }
        }
        None
    }

    /// Scans the CJK parts of a message. Topic hits go to `topics`.
    pub(crate) fn scan(&self, ctx: &Ctx<'_>, out: &mut Vec<Cand>, topics: &mut Vec<TopicHit>) {
        let Some(ac) = &self.ac else { return };
        let text = ctx.text;
        let toks = ctx.toks;
        // Search only the CJK runs (with the punctuation inside them, such as
        // `姓名：`): every pattern is CJK, and Latin text is most of many messages.
        let mut i = 0;
        while i < toks.len() {
            if toks[i].kind != Kind::Cjk {
                i += 1;
                continue;
            }
            let from = toks[i].start;
            let mut j = i + 1;
            while j < toks.len() && matches!(toks[j].kind, Kind::Cjk | Kind::Punct) {
                j += 1;
            }
            let to = toks[j - 1].end;
            i = j;
            for m in ac.find_iter(aho_corasick::Input::new(text).range(from..to)) {
                self.on_match(ctx, m, out, topics);
            }
        }
        addresses(ctx, out);
    }

    fn on_match(&self, ctx: &Ctx<'_>, m: aho_corasick::Match, out: &mut Vec<Cand>, topics: &mut Vec<TopicHit>) {
        let text = ctx.text;
        {
            let Some(&marker) = self.markers.get(m.pattern().as_usize()) else {
                return;
            };
            match marker {
                Marker::NameCue { strong } => {
                    if let Some(end) = self.name_at(text, m.end(), !strong) {
                        out.push(Cand {
                            label: Label::Person,
                            start: m.end(),
                            end,
                            weight: if strong { 0.75 } else { 0.65 },
                        });
                    }
                }
                Marker::Honorific => {
                    if let Some(start) = self.name_before(text, m.start()) {
                        out.push(Cand {
                            label: Label::Person,
                            start,
                            end: m.start(),
                            weight: 0.7,
                        });
                    }
                }
                Marker::Topic { topic, weak } => topics.push(TopicHit {
                    topic,
                    weak,
                    start: m.start(),
                    end: m.end(),
                }),
                Marker::AddrCue => {}
            }
        }
    }
}

/// `建国路88号`, `中山北路100號`, `…省…市…区…`: a road marker, a number and
/// `号`, or a chain of administrative divisions.
fn addresses(ctx: &Ctx<'_>, out: &mut Vec<Cand>) {
    let toks = ctx.toks;
    for (i, t) in toks.iter().enumerate() {
        if t.kind != Kind::Cjk {
            continue;
        }
        let s = &ctx.text[t.start..t.end];
        // Road + number + 号.
        let road_end =
            s.ends_with('路') || s.ends_with('街') || s.ends_with('道') || s.ends_with('巷') || s.ends_with('弄');
        if road_end
            && toks
                .get(i + 1)
                .is_some_and(|n| n.kind == Kind::Num && !n.space_before && n.len() <= 5)
            && toks.get(i + 2).is_some_and(|h| {
                h.kind == Kind::Cjk
                    && !h.space_before
                    && (ctx.text[h.start..].starts_with('号') || ctx.text[h.start..].starts_with('號'))
            })
        {
            let start = address_start(s) + t.start;
            let h = &toks[i + 2];
            out.push(Cand {
                label: Label::StreetAddress,
                start,
                end: h.start + '号'.len_utf8(),
                weight: 0.75,
            });
            continue;
        }
        // Province / city / district chain.
        let divisions = s
            .chars()
            .filter(|c| matches!(c, '省' | '市' | '区' | '區' | '县' | '縣' | '镇' | '鎮' | '乡' | '鄉'))
            .count();
        let roads = s
            .chars()
            .filter(|c| matches!(c, '路' | '街' | '巷' | '弄' | '村'))
            .count();
        if divisions >= 2 && (roads >= 1 || divisions >= 3) && s.chars().count() >= 6 {
            let start = address_start(s) + t.start;
            out.push(Cand {
                label: Label::StreetAddress,
                start,
                end: t.end,
                weight: 0.65,
            });
        }
    }
}

/// Where the address begins inside a CJK run: after the last verb or
/// particle that introduces it (`住在`, `是`, `：`), at most 16 characters back.
fn address_start(s: &str) -> usize {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if matches!(c, '在' | '是' | '：' | '到' | '于' | '於' | '址') {
            start = i + c.len_utf8();
        }
    }
    let tail_chars = s[start..].chars().count();
    if tail_chars > 16 {
        let skip = tail_chars - 16;
        start += s[start..].char_indices().nth(skip).map_or(0, |(i, _)| i);
    }
    start
}
