//! Word lexicons: name lists, English words, cue words and topic keywords,
//! loaded from `data/privacy/` with `include_str!` and hashed once.
//!
//! Two tables: a small hash map (cues, titles, street words, topic keywords:
//! a few thousand entries that stay in cache) consulted for every word, and a
//! large fingerprint table (about 160,000 names and English words in 1 MiB)
//! consulted only for the words that may be names. Keys are lower case,
//! packed into a `u128` when at most 16 bytes long; entries with diacritics
//! are also stored folded to ASCII (`jørgensen` → `jorgensen`), and lookups
//! try both.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Bit flags a word can carry. One word may carry several (`will` is an
/// English word and a given name).
pub(crate) mod flag {
    // Large map.
    pub const FIRST: u64 = 1 << 0;
    pub const LAST: u64 = 1 << 1;
    /// A common English word (SCOWL sizes 10–35).
    pub const WORD: u64 = 1 << 2;
    /// One of the ~4,000 most common English words (SCOWL size 10).
    pub const COMMON: u64 = 1 << 3;
    // Small map.
    /// Mr, Mrs, Dr, Bapak, Ibu… : the next capitalised words are a name.
    pub const TITLE: u64 = 1 << 4;
    /// Street, St, Ave, Road…: ends a street name after a house number.
    pub const STREET_SUFFIX: u64 = 1 << 5;
    /// Rue, Via, Calle, Jl., Jalan, ul.…: starts a street name.
    pub const STREET_PREFIX: u64 = 1 << 6;
    /// Suite, Apt, Unit, Floor…: a unit inside a building.
    pub const UNIT: u64 = 1 << 7;
    /// phone, tel, mobile, call, fax, WhatsApp, telepon…
    pub const PHONE_CUE: u64 = 1 << 8;
    /// address, lives, located, alamat…
    pub const ADDR_CUE: u64 = 1 << 9;
    /// I, me, my, we, saya, aku…: the writer speaks about themself.
    pub const FIRST_PERSON: u64 = 1 << 10;
    /// Places, products, technologies that the name lists also hold.
    pub const NOT_NAME: u64 = 1 << 11;
    /// password, passwd, secret, token, api_key…
    pub const SECRET_KEY: u64 = 1 << 12;
    /// card, credit, visa, mastercard, kartu…
    pub const CARD_CUE: u64 = 1 << 13;
    /// ssn, social (security)
    pub const SSN_CUE: u64 = 1 << 14;
    /// nik, ktp, identity (card)…
    pub const ID_CUE: u64 = 1 << 15;
    /// Words before a name: named, called, dear, hi, son, wife, friend…
    pub const PERSON_PRE: u64 = 1 << 16;
    /// Verbs after a name: said, shouted, lives, explained…
    pub const PERSON_POST: u64 = 1 << 17;
    /// The first word of a topic phrase (`blood pressure`).
    pub const PHRASE_HEAD: u64 = 1 << 18;
    /// Words that never start or continue a name although capitalised
    /// (pronouns, days, months, greetings).
    pub const STOP: u64 = 1 << 19;
    /// Words that may open a name cue phrase (`name`, `call`, `I`, `saya`).
    pub const NAME_CUE: u64 = 1 << 21;
    /// Number words (`three`, `twice`, `half`): quantities in word problems.
    pub const NUMBER_WORD: u64 = 1 << 22;
    /// The street types that end a street name even in lower-case text
    /// (`street`, `road`, `avenue`); the other suffixes need capitals.
    pub const STREET_CORE: u64 = 1 << 23;
    /// Words that open a quantitative question (`how`, `what`, `calculate`).
    pub const ASKS: u64 = 1 << 32;
    /// Words that open a post box or military address (`PO`, `PSC`, `FPO`).
    pub const BOX: u64 = 1 << 33;
    /// A topic keyword too general to count alone (`doctor`, `budget`).
    pub const TOPIC_WEAK: u64 = 1 << 20;
    /// Topic keywords, one bit per topic (see [`super::Topic`]).
    pub const TOPIC_SHIFT: u32 = 24;
    // Bits 24..32 hold the topics.
    pub const TOPIC_MASK: u64 = 0xFF << TOPIC_SHIFT;
}

/// A fast, non-cryptographic hasher (the `FxHash` scheme): the keys are our
/// own word lists, so hash flooding is not a concern.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;

/// A lower-case word of at most 16 bytes packed into an integer: hashing and
/// comparing it touches no string memory, which keeps lookups in the
/// 130,000-word map to one cache miss. 0 means "no key" (empty or longer).
pub(crate) type Key = u128;
type Map = HashMap<Key, u64, FxBuild>;
/// The large lexicon in compact form: one `u32` a slot holding a 28-bit
/// fingerprint of the word and its four flags (`FIRST`, `LAST`, `WORD`,
/// `COMMON`). 160,000 words fit in 1 MiB instead of 6 MiB of hash map, so a
/// lookup usually stays in the L2 cache. Two words share a fingerprint and a
/// probe chain with a probability of about 10⁻⁸ per lookup; the cost of such
/// a collision is one wrong name-list answer.
pub(crate) struct FpTable {
    slots: Vec<u32>,
    mask: usize,
}

impl FpTable {
    fn with_capacity(n: usize) -> Self {
        let size = (n * 2).next_power_of_two().max(16);
        FpTable {
            slots: vec![0; size],
            mask: size - 1,
        }
    }

    #[inline]
    fn hash(key: Key) -> u64 {
        // splitmix64 finaliser over both halves.
        let mut x = (key as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((key >> 64) as u64).rotate_left(31);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    #[inline]
    fn fingerprint(h: u64) -> u32 {
        // 28 bits, never 0 (0 marks an empty slot).
        (((h >> 36) as u32) | 1) << 4
    }

    fn insert(&mut self, key: Key, flags: u64) {
        let h = Self::hash(key);
        let fp = Self::fingerprint(h);
        let f = (flags & 0xF) as u32;
        let mut i = h as usize & self.mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                self.slots[i] = fp | f;
                return;
            }
            if s & !0xF == fp {
                self.slots[i] = s | f;
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    fn get(&self, key: Key) -> u64 {
        let h = Self::hash(key);
        let fp = Self::fingerprint(h);
        let mut i = h as usize & self.mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                return 0;
            }
            if s & !0xF == fp {
                return u64::from(s & 0xF);
            }
            i = (i + 1) & self.mask;
        }
    }
}

/// Words longer than 16 bytes: (small-map flags, large-map flags).
type LongMap = HashMap<Box<str>, (u64, u64), FxBuild>;

/// Packs lower-case bytes into a [`Key`].
#[inline]
pub(crate) fn pack(bytes: &[u8]) -> Key {
    if bytes.is_empty() || bytes.len() > 16 {
        return 0;
    }
    let mut b = [0u8; 16];
    b[..bytes.len()].copy_from_slice(bytes);
    u128::from_le_bytes(b)
}

/// Lower-cases an ASCII word straight into a [`Key`]: `word` is
/// `text[start..end]`, read 16 bytes at a time when the text allows, and
/// lower-cased with word-parallel arithmetic (no per-byte loop).
#[inline]
pub(crate) fn ascii_key_at(text: &[u8], start: usize, end: usize) -> Key {
    let len = end - start;
    if len == 0 || len > 16 {
        return 0;
    }
    let raw = match text.get(start..start + 16) {
        Some(w) => {
            let mut b = [0u8; 16];
            b.copy_from_slice(w);
            let x = u128::from_le_bytes(b);
            if len == 16 { x } else { x & ((1u128 << (len * 8)) - 1) }
        }
        None => pack(&text[start..end]),
    };
    const LO7: u128 = 0x7f7f_7f7f_7f7f_7f7f_7f7f_7f7f_7f7f_7f7f;
    const HI: u128 = 0x8080_8080_8080_8080_8080_8080_8080_8080;
    const ONES: u128 = 0x0101_0101_0101_0101_0101_0101_0101_0101;
    let low = raw & LO7;
    // High bit of each byte: byte >= 'A', byte > 'Z', byte is ASCII.
    let ge_a = low + ONES * (0x80 - 0x41);
    let gt_z = low + ONES * (0x80 - 0x5b);
    let upper = ge_a & !gt_z & !raw & HI;
    raw | (upper >> 2)
}

#[cfg(test)]
/// Lower-cases an ASCII word into a [`Key`] (reference for the tests).
pub(crate) fn ascii_key(word: &[u8]) -> Key {
    if word.is_empty() || word.len() > 16 {
        return 0;
    }
    let mut b = [0u8; 16];
    for (d, c) in b.iter_mut().zip(word) {
        *d = c.to_ascii_lowercase();
    }
    u128::from_le_bytes(b)
}

/// The topics a keyword can point at (bit positions above `TOPIC_SHIFT`).
pub(crate) const TOPIC_NAMES: [&str; 7] = [
    "health",
    "finance",
    "legal",
    "religion",
    "sexuality",
    "ethnicity",
    "politics",
];

const ENGLISH_COMMON: &str = include_str!("../../data/privacy/english_common.txt");
const ENGLISH_WORDS: &str = include_str!("../../data/privacy/english_words.txt");
const GIVEN_CENSUS: &str = include_str!("../../data/privacy/given_names_census.txt");
const GIVEN_SSA: &str = include_str!("../../data/privacy/given_names_ssa.txt");
const GIVEN_INTL: &str = include_str!("../../data/privacy/given_names_intl.txt");
const SURNAMES_CENSUS: &str = include_str!("../../data/privacy/surnames_census.txt");
const SURNAMES_INTL: &str = include_str!("../../data/privacy/surnames_intl.txt");
const NOT_NAMES: &str = include_str!("../../data/privacy/not_names.txt");
const TOPICS_EN: &str = include_str!("../../data/privacy/topics_en.txt");
const TOPICS_ID: &str = include_str!("../../data/privacy/topics_id.txt");
pub(crate) const TOPICS_ZH: &str = include_str!("../../data/privacy/topics_zh.txt");
pub(crate) const CN_SURNAMES: &str = include_str!("../../data/privacy/cn_surnames.txt");

/// Cue words written here rather than in data files: they are grammar, not
/// vocabulary, and short.
const CUES: &[(u64, &str)] = &[
    (
        flag::TITLE,
        "mr mrs ms miss mx dr prof sir madam madame mme mlle herr frau sr sra srta dott sig \
         bapak pak ibu bu tuan nyonya nona sdr sdri saudara saudari",
    ),
    (
        flag::STREET_CORE,
        "street st avenue ave road rd boulevard blvd lane ln drive dr way court ct terrace highway hwy \
         utca út útja tér körút ulica gatan gata gate vej vegen veien weg straße strasse laan straat",
    ),
    (
        flag::STREET_SUFFIX,
        "street st str avenue ave av road rd boulevard blvd lane ln drive dr court ct place pl way \
         terrace ter parkway pkwy highway hwy circle cir square sq crescent cres close row trail \
         plaza alley route rte bypass cove coves summit forks flats prairie union radial dam gardens \
         grove heights hill hills park meadows mews walk wharf quay expressway freeway pike turnpike \
         loop run path pass crossing junction landing point ridge springs station track vista \
         utca út útja tér körút ulica gatan gata gate vej vegen veien weg straße strasse laan straat",
    ),
    (
        flag::STREET_PREFIX,
        "rue via viale calle carrer avenida avda rua travessa praça piazza corso largo strada \
         ul ulica aleja al jl jln jalan gang gg utca pod na",
    ),
    (
        flag::UNIT,
        "suite ste apt apartment unit floor fl flat bldg building lantai blok rt rw",
    ),
    (
        flag::PHONE_CUE,
        "phone telephone tel tele mobile cell cellphone fax call called calling ring text texts \
         whatsapp wa sms number numbers contact hp telepon telp nomor ponsel handphone messages \
         registered answering reach dial desk office",
    ),
    (
        flag::ADDR_CUE,
        "address addresses lives live living located location reside resides residing moved \
         alamat tinggal domisili deliver ship shipping billing corner",
    ),
    (
        flag::FIRST_PERSON,
        "i me my mine myself we us our ours saya aku kami kita daku",
    ),
    (
        flag::SECRET_KEY,
        "password passwd pwd passphrase secret token apikey api_key access_key secret_key \
         client_secret auth_token access_token private_key sandi kata_sandi",
    ),
    (
        flag::CARD_CUE,
        "card cards credit debit visa mastercard amex maestro discover jcb kartu cc",
    ),
    (flag::SSN_CUE, "ssn social security"),
    (flag::ASKS, "how in what find calculate compute determine evaluate"),
    (
        flag::BOX,
        "p po postbox postfach apartado psc unit apo fpo dpo usns uss usnv uscgc c",
    ),
    (
        flag::NUMBER_WORD,
        "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen \
         sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety \
         hundred thousand million billion half twice thrice triple double quarter third thirds \
         fourth fifth dozen percent",
    ),
    (
        flag::NAME_CUE,
        "name surname nama namaku call calls i this saya aku dear hi hello hey named called",
    ),
    (flag::ID_CUE, "nik ktp kependudukan identity id passport"),
    (
        flag::PERSON_PRE,
        "named called call dear hi hello hey thanks thank dearest love yours sincerely regards \
         kid kids son daughter wife husband friend boss mom mum dad mother father brother sister \
         uncle aunt cousin grandma grandpa grandmother grandfather nephew niece colleague coworker \
         partner girlfriend boyfriend fiance fiancee neighbour neighbor patient client tenant \
         landlord manager teacher student baby child producer director starring directed sung \
         written speaker singer author actor actress player coach captain",
    ),
    (
        flag::PERSON_POST,
        "said says shouted asked told replied explained wrote writes lives lived spent began \
         listed works worked studied married born died passed sings sang smiled laughed cried \
         whispered thinks thought wants wanted loves loved hates felt feels suggested mentioned \
         recommended emailed texted",
    ),
    (
        flag::STOP,
        "i me my you your he him his she her it its we us our they them their this that these those \
         the a an and or but if then so not no yes ok okay please thanks hello hi hey dear \
         monday tuesday wednesday thursday friday saturday sunday january february march april may \
         june july august september october november december god lord \
         saya aku kamu anda dia kami kita mereka ini itu dan atau yang di ke dari untuk dengan tidak \
         ada bisa mau apa siapa bagaimana kenapa mengapa halo selamat terima kasih tolong mohon",
    ),
];

/// Folds Latin letters with diacritics to ASCII (lower case in, lower case
/// out); `None` for characters it does not know.
pub(crate) fn fold_char(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'č' | 'ĉ' | 'ċ' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ğ' | 'ĝ' | 'ġ' | 'ģ' => "g",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'į' | 'ı' => "i",
        'ķ' => "k",
        'ł' | 'ĺ' | 'ļ' | 'ľ' => "l",
        'ñ' | 'ń' | 'ň' | 'ņ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ř' => "r",
        'ś' | 'š' | 'ş' | 'ș' => "s",
        'ß' => "ss",
        'ť' | 'ţ' | 'ț' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ů' | 'ű' | 'ų' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

/// Lower-cases `word` into `buf`, folding diacritics when `fold` is set.
/// Returns false when a character cannot be represented (the word is then
/// not looked up folded).
pub(crate) fn lower_into(word: &str, buf: &mut String, fold: bool) -> bool {
    buf.clear();
    for c in word.chars() {
        if c.is_ascii() {
            buf.push(c.to_ascii_lowercase());
            continue;
        }
        for l in c.to_lowercase() {
            if fold {
                match fold_char(l) {
                    Some(f) => buf.push_str(f),
                    None => return false,
                }
            } else {
                buf.push(l);
            }
        }
    }
    true
}

/// The small map in the form looked up for every word: a table of `u64`
/// slots (32-bit hash fingerprint, index + 1 into `entries`; 0 is empty) at
/// most half full, so that a word absent from the map, the usual case, is
/// usually told by one slot in a table that stays in the L1/L2 cache without
/// reading any key; a fingerprint match is confirmed on the full key.
struct KeyTable {
    slots: Vec<u64>,
    mask: usize,
    entries: Vec<(Key, u64)>,
}

impl KeyTable {
    fn new(map: &Map) -> Self {
        let size = (map.len() * 2).next_power_of_two().max(16);
        let mut t = KeyTable {
            slots: vec![0; size],
            mask: size - 1,
            entries: Vec::with_capacity(map.len()),
        };
        for (&key, &flags) in map {
            let h = Self::hash(key);
            let mut i = h as usize & t.mask;
            while t.slots[i] != 0 {
                i = (i + 1) & t.mask;
            }
            t.entries.push((key, flags));
            t.slots[i] = (h >> 32) << 32 | t.entries.len() as u64;
        }
        t
    }

    /// Two independent multiplies (one in flight at a time on the critical
    /// path): enough mixing for a table whose hits are confirmed on the key.
    #[inline]
    fn hash(key: Key) -> u64 {
        let x =
            (key as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((key >> 64) as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x.rotate_left(26)
    }

    #[inline]
    fn get(&self, key: Key) -> u64 {
        let h = Self::hash(key);
        let fp = h >> 32;
        let mut i = h as usize & self.mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                return 0;
            }
            if s >> 32 == fp
                && let Some(&(k, f)) = self.entries.get((s & 0xFFFF_FFFF) as usize - 1)
                && k == key
            {
                return f;
            }
            i = (i + 1) & self.mask;
        }
    }
}

/// Both maps plus the topic phrases.
pub(crate) struct Lexicon {
    small: KeyTable,
    large: FpTable,
    long: LongMap,
    /// Two-word topic phrases (`blood pressure`), keyed by the whole phrase.
    phrases: HashMap<&'static str, u64, FxBuild>,
}

fn words(list: &'static str) -> impl Iterator<Item = &'static str> {
    list.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
}

/// Which of the two maps an entry goes to.
#[derive(Clone, Copy)]
enum Which {
    Small,
    Large,
}

fn insert_one(map: &mut Map, long: &mut LongMap, w: &str, f: u64, which: Which) {
    let key = pack(w.as_bytes());
    if key != 0 {
        *map.entry(key).or_insert(0) |= f;
    } else if !w.is_empty() {
        let e = long.entry(w.into()).or_insert((0, 0));
        match which {
            Which::Small => e.0 |= f,
            Which::Large => e.1 |= f,
        }
    }
}

fn insert(map: &mut Map, long: &mut LongMap, w: &str, f: u64, which: Which) {
    insert_one(map, long, w, f, which);
    if !w.is_ascii() {
        let mut buf = String::with_capacity(w.len());
        if lower_into(w, &mut buf, true) && buf != w {
            insert_one(map, long, &buf, f, which);
        }
    }
}

impl Lexicon {
    pub(crate) fn new() -> Self {
        let mut long = LongMap::default();
        let mut large = Map::with_capacity_and_hasher(140_000, FxBuild::default());
        let l = Which::Large;
        for w in ENGLISH_COMMON.lines() {
            insert(&mut large, &mut long, w, flag::WORD | flag::COMMON, l);
        }
        for w in ENGLISH_WORDS.lines() {
            insert(&mut large, &mut long, w, flag::WORD, l);
        }
        for w in words(GIVEN_CENSUS).chain(words(GIVEN_SSA)).chain(words(GIVEN_INTL)) {
            insert(&mut large, &mut long, w, flag::FIRST, l);
        }
        for w in words(SURNAMES_CENSUS).chain(words(SURNAMES_INTL)) {
            insert(&mut large, &mut long, w, flag::LAST, l);
        }

        let mut small = Map::with_capacity_and_hasher(4096, FxBuild::default());
        let sm = Which::Small;
        for &(f, list) in CUES {
            for w in list.split_whitespace() {
                insert(&mut small, &mut long, w, f, sm);
            }
        }
        for w in words(NOT_NAMES) {
            insert(&mut small, &mut long, w, flag::NOT_NAME, sm);
        }
        let mut phrases = HashMap::with_hasher(FxBuild::default());
        for list in [TOPICS_EN, TOPICS_ID] {
            for (topic, term, weak) in topic_terms(list) {
                let f = (1u64 << (flag::TOPIC_SHIFT + topic)) | if weak { flag::TOPIC_WEAK } else { 0 };
                match term.split_once(' ') {
                    Some((head, _)) => {
                        *phrases.entry(term).or_insert(0) |= f;
                        insert(&mut small, &mut long, head, flag::PHRASE_HEAD, sm);
                    }
                    None => insert(&mut small, &mut long, term, f, sm),
                }
            }
        }
        Lexicon {
            small: KeyTable::new(&small),
            large: {
                let mut t = FpTable::with_capacity(large.len());
                for (&k, &f) in &large {
                    t.insert(k, f);
                }
                t
            },
            long,
            phrases,
        }
    }

    /// Small-map flags of a packed word.
    #[inline]
    pub(crate) fn small_key(&self, key: Key) -> u64 {
        self.small.get(key)
    }

    /// Large-map flags of a packed word.
    #[inline]
    pub(crate) fn large_key(&self, key: Key) -> u64 {
        self.large.get(key)
    }

    /// Small-map flags of a lower-case word of any length.
    pub(crate) fn small(&self, lower: &str) -> u64 {
        match pack(lower.as_bytes()) {
            0 => self.long.get(lower).map_or(0, |e| e.0),
            k => self.small_key(k),
        }
    }

    /// Large-map flags of a lower-case word of any length.
    pub(crate) fn large(&self, lower: &str) -> u64 {
        match pack(lower.as_bytes()) {
            0 => self.long.get(lower).map_or(0, |e| e.1),
            k => self.large_key(k),
        }
    }

    /// Topic flags of a two-word phrase (`"blood pressure"`).
    pub(crate) fn phrase(&self, two_words: &str) -> u64 {
        self.phrases.get(two_words).copied().unwrap_or(0)
    }
}

/// Parses `topic: term, term~` lines into (topic index in [`TOPIC_NAMES`],
/// term, weak).
pub(crate) fn topic_terms(list: &'static str) -> impl Iterator<Item = (u32, &'static str, bool)> {
    list.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let (topic, terms) = l.split_once(':')?;
            let idx = TOPIC_NAMES.iter().position(|t| *t == topic.trim())?;
            Some((idx as u32, terms))
        })
        .flat_map(|(idx, terms)| {
            terms
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(move |t| match t.strip_suffix('~') {
                    Some(t) => (idx, t, true),
                    None => (idx, t, false),
                })
        })
}

/// The set of Chinese surnames (one or two characters).
pub(crate) fn cn_surnames() -> HashSet<&'static str, FxBuild> {
    words(CN_SURNAMES).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn swar_lower_case_matches_the_byte_loop() {
        let text = b"Hello WORLD_42 az AZ @[`{ x ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789abcdef Zz";
        for start in 0..text.len() {
            for end in start..=text.len().min(start + 17) {
                let want = ascii_key(&text[start..end]);
                assert_eq!(ascii_key_at(text, start, end), want, "{start}..{end}");
            }
        }
    }

    #[test]
    fn lexicon_lookups() {
        let lex = Lexicon::new();
        assert!(lex.large("smith") & flag::LAST != 0);
        assert!(lex.large("mary") & flag::FIRST != 0);
        assert!(lex.large("table") & flag::WORD != 0);
        assert!(lex.large("jorgensen") & flag::LAST != 0 || lex.large("jørgensen") & flag::LAST != 0);
        assert!(lex.small("mr") & flag::TITLE != 0);
        assert!(lex.small("diagnosed") & flag::TOPIC_MASK != 0);
        assert!(lex.phrase("blood pressure") & flag::TOPIC_MASK != 0);
        // Words longer than 16 bytes go through the long map.
        assert!(lex.large("internationalization") & flag::WORD != 0 || lex.large("responsibilities") & flag::WORD != 0);
        assert!(cn_surnames().contains("王"));
    }

    /// Every word of the small map is found with its flags; other words get 0.
    #[test]
    fn key_table_finds_every_entry() {
        let mut map = Map::default();
        let words: Vec<String> = (0..3000).map(|i| format!("w{i}x")).collect();
        for (i, w) in words.iter().enumerate() {
            map.insert(pack(w.as_bytes()), i as u64 + 1);
        }
        let t = KeyTable::new(&map);
        for (i, w) in words.iter().enumerate() {
            assert_eq!(t.get(pack(w.as_bytes())), i as u64 + 1, "{w}");
        }
        for w in ["absent", "w3000x", "w12", "x0w"] {
            assert_eq!(t.get(pack(w.as_bytes())), 0, "{w}");
        }
    }
}
