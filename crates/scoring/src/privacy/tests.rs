//! Table-driven tests of the privacy scanner: per type positive and negative
//! cases (valid and invalid checksums), cues in English, Chinese and
//! Indonesian, character offsets in multi-byte text, and the score scale.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use api::Role;

fn scanner() -> &'static PrivacyScanner {
    static S: std::sync::OnceLock<PrivacyScanner> = std::sync::OnceLock::new();
    S.get_or_init(PrivacyScanner::new)
}

fn scan(text: &str) -> PrivacyReport {
    scanner().scan(&[Turn { role: Role::User, text }])
}

/// The values of the entities with `label` found in `text`.
fn found(text: &str, label: Label) -> Vec<String> {
    let r = scan(text);
    r.entities
        .iter()
        .filter(|e| e.label == label)
        .map(|e| text[e.byte_start..e.byte_end].to_string())
        .collect()
}

/// Each positive case must yield an entity of `label` containing `value`;
/// each negative case must yield none of that label.
fn check(label: Label, positive: &[(&str, &str)], negative: &[&str]) {
    for (text, value) in positive {
        let got = found(text, label);
        assert!(
            got.iter().any(|g| g.contains(value)),
            "{label:?}: expected {value:?} in {text:?}, got {got:?} (all: {:?})",
            scan(text).entities
        );
    }
    for text in negative {
        let got = found(text, label);
        assert!(got.is_empty(), "{label:?}: expected nothing in {text:?}, got {got:?}");
    }
}

#[test]
fn emails() {
    check(
        Label::Email,
        &[
            (
                "write to john.doe+news@mail.example.co.uk today",
                "john.doe+news@mail.example.co.uk",
            ),
            ("Kontak: budi_santoso@contoh.id.", "budi_santoso@contoh.id"),
            ("邮箱是wang.wei@example.cn谢谢", "wang.wei@example.cn"),
        ],
        &[
            "ping @channel now",
            "user@localhost",
            "a@b",
            "decorator @app.route('/')",
            "x@.com",
        ],
    );
}

#[test]
fn phones() {
    check(
        Label::Phone,
        &[
            ("call +86 138 1234 5678 please", "+86 138 1234 5678"),
            ("我的手机13812345678", "13812345678"),
            ("my number is 13912345678", "13912345678"),
            ("WA saya +62 812-3456-7890", "+62 812-3456-7890"),
            ("hubungi 0812 3456 7890 ya", "0812 3456 7890"),
            ("nomor hp 081234567890", "081234567890"),
            ("Call (415) 555-0123 after five", "(415) 555-0123"),
            ("reach me at 415-555-0123", "415-555-0123"),
            ("office +44 20 7946 0958", "+44 20 7946 0958"),
            ("mobile 07700 900123", "07700 900123"),
            ("Can someone call me on 9472 7916?", "9472 7916"),
            ("Fax: 463-612-6138x036", "463-612-6138x036"),
            ("Desk: +41 (0)85 806 98 67", "+41 (0)85 806 98 67"),
            ("电话：021-6234 5678", "021-6234 5678"),
        ],
        &[
            "between 2019-2022 sales grew",
            "install version 1.2.3.4567",
            "it costs $1 234 567 in total",
            "the id 12345678 is internal",
            "on 2024-01-15 12:30 we met",
            "born 12/31/1999",
            "scores 85 90 78 92",
            "years 1990 2000 2010",
            "pi is 3.14159265",
        ],
    );
}

#[test]
fn cards() {
    check(
        Label::CreditCard,
        &[
            ("card 4111 1111 1111 1111 exp 12/27", "4111 1111 1111 1111"),
            ("4111-1111-1111-1111", "4111-1111-1111-1111"),
            ("amex 378282246310005", "378282246310005"),
            ("Diners 3056 930902 5904", "3056 930902 5904"),
            ("my credit card 501864667909 was blocked", "501864667909"),
            ("Visa 4064557646766436702 (19 digits)", "4064557646766436702"),
        ],
        &[
            // Luhn fails.
            "card 4111 1111 1111 1112",
            // Luhn holds but no network and no cue.
            "ref 9999 9999 9999 9995",
            // Twelve digits without a card cue.
            "order 501864667909 shipped",
            // Odd grouping.
            "4111 11 111111 1111",
        ],
    );
}

#[test]
fn ibans() {
    check(
        Label::Iban,
        &[
            ("IBAN GB82 WEST 1234 5698 7654 32 please", "GB82 WEST 1234 5698 7654 32"),
            ("DE89370400440532013000", "DE89370400440532013000"),
            ("rekening NL91ABNA0417164300.", "NL91ABNA0417164300"),
        ],
        &[
            // Wrong check digits.
            "DE89370400440532013001",
            // Wrong length for the country.
            "GB82WEST123456987654",
            // Unknown country.
            "ZZ82WEST12345698765432",
        ],
    );
}

#[test]
fn ssns() {
    check(
        Label::UsSsn,
        &[
            ("Here's my SSN: 536-22-1234", "536-22-1234"),
            ("social security number 536 22 1234", "536 22 1234"),
            ("ssn 536221234", "536221234"),
        ],
        &[
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "536-00-1234",
            "536-22-0000",
            "078-05-1120",
            "code 536221234",
        ],
    );
}

#[test]
fn china_ids() {
    check(
        Label::CnResidentId,
        &[
            ("我的身份证号是11010519491231002X。", "11010519491231002X"),
            ("id 11010519491231002x ok", "11010519491231002x"),
        ],
        &[
            // Bad check character.
            "身份证 110105194912310021",
            // No such province (99).
            "990105194912310029",
            // 31 February.
            "11010519490231002X",
        ],
    );
}

#[test]
fn niks() {
    check(
        Label::IdNik,
        &[
            ("NIK saya 3171011203900001", "3171011203900001"),
            // Women: day + 40.
            ("KTP: 3171015203900001", "3171015203900001"),
        ],
        &[
            "NIK 3171017203900001",
            "NIK 3171011213900001",
            "NIK 9971011203900001",
            "NIK 3171011203900000",
        ],
    );
}

#[test]
fn ip_addresses() {
    check(
        Label::IpAddress,
        &[
            ("blocked from 36.106.174.11 again", "36.106.174.11"),
            ("client_ip = |16.244.11.141|", "16.244.11.141"),
            (
                "address 6e40:4041:c617:e898:c11:40d2:c669:2eb4 blocked",
                "6e40:4041:c617:e898:c11:40d2:c669:2eb4",
            ),
            ("host 2001:db8::8a2e:370:7334", "2001:db8::8a2e:370:7334"),
        ],
        &[
            "999.1.1.1",
            "version 1.2.3",
            "std::vector<int> v;",
            "at 12:30:45 sharp",
            "mac 00:1a:2b:3c:4d:5e",
        ],
    );
    // Private addresses are found but weigh less than the threshold.
    let r = scan("ssh into 192.168.1.10");
    assert!(r.score < 0.5, "{r:?}");
}

#[test]
fn secrets() {
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----";
    check(
        Label::Secret,
        &[
            (
                "OPENAI_API_KEY=sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34",
                "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34",
            ),
            (
                "key sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0",
                "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0",
            ),
            ("aws AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"),
            (
                "token ghp_1234567890abcdefghijABCDEFGHIJ123456",
                "ghp_1234567890abcdefghijABCDEFGHIJ123456",
            ),
            (
                "google AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
                "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
            ),
            ("slack xoxb-123456789012-abcdefGHIJ", "xoxb-123456789012-abcdefGHIJ"),
            (
                "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            ),
            (pem, "PRIVATE KEY"),
            (
                "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0",
            ),
            ("login with password=hunter22 please", "hunter22"),
            ("passwd: S3cr3t!", "S3cr3t!"),
            (r#"{"secret": "correct horse"}"#, "correct"),
            ("my password is Tr0ub4dor", "Tr0ub4dor"),
            ("DB_PASSWORD='xK9#mP2$'", "xK9#mP2"),
        ],
        &[
            "password = os.environ[\"PW\"]",
            "token = get_token()",
            "api_key = config.api_key",
            "password: <your password>",
            "use scikit-learn (sk-learn) here",
            "a risk-free sk-rate",
            "token = tokenizer",
            "password=********",
        ],
    );
}

#[test]
fn persons_english() {
    check(
        Label::Person,
        &[
            ("My name is John Smith and I need help", "John Smith"),
            ("my name is vitoria", "vitoria"),
            ("Hi, I'm Sarah.", "Sarah"),
            ("Dear Mr. Thompson, thank you", "Thompson"),
            ("Ms. Austin flew to Oslo on Monday.", "Austin"),
            ("Please add Emily Carter to the account", "Emily Carter"),
            ("Call me Ishmael.", "Ishmael"),
            ("Her maiden name is Key", "Key"),
            ("What's your last name? Boyle", "Boyle"),
            ("Maybe it's under Elita B Desaulniers", "Elita B Desaulniers"),
            ("Bryce, can I please speak to your boss?", "Bryce"),
            ("follow up with patricia desrosiers next week", "patricia desrosiers"),
            (
                "I want to add Mercédesz Szôllôssy as a beneficiary",
                "Mercédesz Szôllôssy",
            ),
        ],
        &[
            "The Great Wall of China is long.",
            "Machine Learning Basics: A Primer",
            "I'm happy to help with that.",
            "This is Python code.",
            "Will you review the May report?",
            "Send it to New York by Friday.",
        ],
    );
}

#[test]
fn persons_chinese_and_indonesian() {
    check(
        Label::Person,
        &[
            ("我叫王小明，今年二十岁。", "王小明"),
            ("你好，我的名字是李娜。", "李娜"),
            ("请联系张伟先生。", "张伟"),
            ("姓名：陈静", "陈静"),
            ("Nama saya Budi Santoso, tinggal di Bandung.", "Budi Santoso"),
            ("Selamat pagi Bapak Joko Widodo", "Joko Widodo"),
            ("Halo, saya Siti dari Surabaya", "Siti"),
        ],
        &["我是学生，我喜欢学习。", "今天天气很好。", "Saya mau pesan makanan."],
    );
}

#[test]
fn addresses() {
    check(
        Label::StreetAddress,
        &[
            ("I live at 221 Baker Street, London", "221 Baker Street"),
            ("ship to 1600 Pennsylvania Ave NW", "1600 Pennsylvania Ave"),
            ("Alamat: Jl. Sudirman No. 5, Jakarta", "Jl. Sudirman No. 5"),
            ("Meet me at P.O. Box 149", "P.O. Box 149"),
            ("The bus station is on Vesterskovvej 79", "Vesterskovvej 79"),
            (
                "Our offices are located at PSC 4574, Box 8393\nAPO AA 81998",
                "PSC 4574, Box 8393",
            ),
            ("She lives at 36 Rue de Rivoli", "36 Rue de Rivoli"),
            ("Koepenicker Str. 74, Berlin", "Koepenicker Str. 74"),
            ("我住在北京市朝阳区建国路88号。", "建国路88号"),
            ("地址：广东省深圳市南山区科技园", "广东省深圳市南山区科技园"),
        ],
        &[
            "There are 18 seats in each row.",
            "Read chapter 5 and section 2.",
            "Rosie can run 10 miles per hour.",
            "Windows 10 and Python 3 are installed.",
        ],
    );
}

#[test]
fn topics_need_self_disclosure() {
    for (text, sensitive) in [
        ("I was diagnosed with diabetes last year, what should I eat?", true),
        ("My wife is pregnant and I'm worried about money.", true),
        ("I'm going through a divorce and need a lawyer.", true),
        ("我最近确诊了抑郁症，怎么办？", true),
        ("Saya sedang hamil tiga bulan.", true),
        ("What causes diabetes?", false),
        ("Explain the history of the Catholic church in Europe.", false),
        (
            "Which gland regulates growth?\nA. thyroid\nB. pituitary\nC. adrenal\nD. pancreas\nAnswer:",
            false,
        ),
        ("My doctor said hi.", false),
    ] {
        let r = scan(text);
        assert_eq!(r.score >= 0.5, sensitive, "{text:?}: {r:?}");
    }
}

#[test]
fn score_scale() {
    // Nothing: 0.
    assert_eq!(scan("Explain how a hash map works.").score, 0.0);
    // A validated identifier alone: ≥ 0.9.
    assert!(scan("card 4111 1111 1111 1111").score >= 0.9);
    assert!(scan("IBAN DE89370400440532013000").score >= 0.9);
    // Contact details: 0.6–0.8.
    let email = scan("write to someone@example.org").score;
    assert!((0.6..=0.8).contains(&email), "{email}");
    // Two kinds of evidence score higher than either alone.
    let both = scan("write to someone@example.org or call +1 415 555 0132").score;
    assert!(both > email, "{both} vs {email}");
    assert!(both < 1.0);
    // Names in a maths word problem are placeholders.
    let r = scan("John has 5 apples and gives 2 to Mary. How many apples does John have left?");
    assert!(r.score < 0.5, "{r:?}");
    // Topics mentioned in general stay below the threshold even when several occur.
    let r = scan("The bishop, the judge and the senator argued about taxes and religion in 1820.");
    assert!(r.score < 0.5, "{r:?}");
}

#[test]
fn offsets_are_chars_and_bytes() {
    let text = "Café ☕ — écrivez à josé.garcía@example.com ou appelez le +33 6 12 34 56 78";
    let r = scan(text);
    let email = r.entities.iter().find(|e| e.label == Label::Email).expect("email");
    let value = &text[email.byte_start..email.byte_end];
    assert_eq!(value, "josé.garcía@example.com");
    // Character offsets index the same span in a char vector.
    let chars: Vec<char> = text.chars().collect();
    let by_chars: String = chars[email.start..email.end].iter().collect();
    assert_eq!(by_chars, value);
    let phone = r.entities.iter().find(|e| e.label == Label::Phone).expect("phone");
    let by_chars: String = chars[phone.start..phone.end].iter().collect();
    assert_eq!(by_chars, "+33 6 12 34 56 78");
    assert_eq!(&text[phone.byte_start..phone.byte_end], "+33 6 12 34 56 78");
    assert!(
        phone.start < phone.byte_start,
        "multi-byte characters precede the phone"
    );

    // Chinese: one char, three bytes.
    let text = "我叫王小明，电话13812345678";
    let r = scan(text);
    let p = r.entities.iter().find(|e| e.label == Label::Phone).expect("phone");
    assert_eq!((p.start, p.end), (8, 19));
    assert_eq!((p.byte_start, p.byte_end), (24, 35));
    let n = r.entities.iter().find(|e| e.label == Label::Person).expect("person");
    assert_eq!((n.start, n.end), (2, 5));
}

#[test]
fn entities_are_sorted_disjoint_and_indexed_by_message() {
    let turns = [
        Turn {
            role: Role::System,
            text: "You are a helpful assistant.",
        },
        Turn {
            role: Role::User,
            text: "I'm Anna Schmidt, card 4111 1111 1111 1111, mail anna@example.de, \
                   phone +49 30 1234567, address Hauptstraße 5, 10115 Berlin.",
        },
        Turn {
            role: Role::Assistant,
            text: "Thanks Anna. Your IBAN is DE89370400440532013000.",
        },
    ];
    let r = scanner().scan(&turns);
    assert!(r.score >= 0.9);
    let labels: Vec<(usize, Label)> = r.entities.iter().map(|e| (e.message, e.label)).collect();
    for want in [
        (1, Label::Person),
        (1, Label::CreditCard),
        (1, Label::Email),
        (1, Label::Phone),
        (1, Label::StreetAddress),
        (2, Label::Iban),
    ] {
        assert!(labels.contains(&want), "missing {want:?} in {labels:?}");
    }
    assert!(!r.entities.iter().any(|e| e.message == 0));
    for w in r.entities.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        assert!((a.message, a.start) < (b.message, b.start), "sorted: {a:?} {b:?}");
        if a.message == b.message {
            assert!(a.end <= b.start, "disjoint: {a:?} {b:?}");
        }
    }
}

#[test]
fn overlapping_candidates_keep_the_most_specific() {
    // A Luhn-valid 16-digit number after a card cue is a card, not a phone.
    let r = scan("my card number 4111111111111111");
    assert_eq!(r.entities.len(), 1, "{r:?}");
    assert_eq!(r.entities[0].label, Label::CreditCard);
    // A valid China ID is not reported as a card or phone too.
    let r = scan("身份证11010519491231002X");
    assert_eq!(r.entities.len(), 1, "{r:?}");
    assert_eq!(r.entities[0].label, Label::CnResidentId);
}

#[test]
fn labels_have_stable_names() {
    let names: Vec<&str> = Label::ALL.iter().map(|l| l.as_str()).collect();
    let mut dedup = names.clone();
    dedup.sort_unstable();
    dedup.dedup();
    assert_eq!(dedup.len(), names.len());
    assert_eq!(Label::CreditCard.as_str(), "credit_card");
    assert!(Label::Health.is_topic() && Label::Politics.is_topic() && !Label::Person.is_topic());
}

#[test]
fn empty_and_odd_input() {
    assert_eq!(scanner().scan(&[]), PrivacyReport::default());
    for text in [
        "", " ", "\n\n", "@", "+", "(", "---", "\u{feff}", "1", "X", "我", "ß", "::", "a@", "@b.c",
    ] {
        let r = scan(text);
        assert!((0.0..=1.0).contains(&r.score), "{text:?}");
    }
    // Long input without spaces does not blow up.
    let long = "9".repeat(10_000) + &"a".repeat(10_000) + &"我".repeat(3_000);
    let r = scan(&long);
    assert!(r.score <= 1.0);
}

#[test]
fn side_texts_are_scanned_after_the_messages() {
    let turns = [
        Turn {
            role: Role::User,
            text: "Please pay the usual invoice.",
        },
        Turn {
            role: Role::Assistant,
            text: "",
        },
    ];
    let side = [
        "pay_invoice",
        r#"{"card":"4111 1111 1111 1111","to":"ops@example.com"}"#,
    ];
    let bare = scanner().scan(&turns);
    assert!(bare.entities.is_empty(), "{bare:?}");
    let r = scanner().scan_with_side(&turns, &side);
    let card = r.entities.iter().find(|e| e.label == Label::CreditCard).expect("card");
    assert_eq!(card.message, turns.len() + 1);
    assert_eq!(&side[1][card.byte_start..card.byte_end], "4111 1111 1111 1111");
    assert!(r.entities.iter().any(|e| e.label == Label::Email && e.message == 3));
    assert!(r.score > bare.score + 0.5, "{} vs {}", r.score, bare.score);
}
