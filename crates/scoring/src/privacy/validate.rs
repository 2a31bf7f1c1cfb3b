//! Validators: checksums and structural rules of identifiers. Each takes
//! ASCII digits (or characters) already stripped of separators.

/// The Luhn (mod 10) checksum of payment cards.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d.wrapping_sub(b'0'));
        if v > 9 {
            return false;
        }
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn prefix_num(digits: &[u8], len: usize) -> u32 {
    digits
        .iter()
        .take(len)
        .fold(0u32, |a, &d| a * 10 + u32::from(d.wrapping_sub(b'0')))
}

/// The card network an issuer identification number (IIN) belongs to, when
/// the length fits the network.
pub(crate) fn card_network(digits: &[u8]) -> Option<&'static str> {
    let n = digits.len();
    let p1 = prefix_num(digits, 1);
    let p2 = prefix_num(digits, 2);
    let p3 = prefix_num(digits, 3);
    let p4 = prefix_num(digits, 4);
    let p6 = prefix_num(digits, 6);
    if p1 == 4 && matches!(n, 13 | 16 | 19) {
        return Some("visa");
    }
    if ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && n == 16 {
        return Some("mastercard");
    }
    if (p2 == 34 || p2 == 37) && n == 15 {
        return Some("amex");
    }
    if ((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39 || p3 == 309) && (14..=19).contains(&n) {
        return Some("diners");
    }
    if (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) || (622_126..=622_925).contains(&p6))
        && (16..=19).contains(&n)
    {
        return Some("discover");
    }
    if (3528..=3589).contains(&p4) && (16..=19).contains(&n) {
        return Some("jcb");
    }
    if (p4 == 2131 || p4 == 1800) && n == 15 {
        return Some("jcb");
    }
    if p2 == 62 && (16..=19).contains(&n) {
        return Some("unionpay");
    }
    if (p2 == 50 || (56..=69).contains(&p2)) && (12..=19).contains(&n) {
        return Some("maestro");
    }
    // 0604: an old UK Maestro/Switch range still printed on cards in circulation.
    if digits.starts_with(b"0604") && (12..=19).contains(&n) {
        return Some("maestro");
    }
    if (2200..=2204).contains(&p4) && n == 16 {
        return Some("mir");
    }
    if (p4 == 6521 || p4 == 6522 || p2 == 60 || p2 == 81 || p2 == 82) && n == 16 {
        return Some("rupay");
    }
    None
}

/// IBAN length per country (ISO 13616 registry).
pub(crate) fn iban_length(cc: &[u8]) -> Option<usize> {
    Some(match cc {
        b"AD" => 24,
        b"AE" => 23,
        b"AL" => 28,
        b"AT" => 20,
        b"AZ" => 28,
        b"BA" => 20,
        b"BE" => 16,
        b"BG" => 22,
        b"BH" => 22,
        b"BI" => 27,
        b"BR" => 29,
        b"BY" => 28,
        b"CH" => 21,
        b"CR" => 22,
        b"CY" => 28,
        b"CZ" => 24,
        b"DE" => 22,
        b"DJ" => 27,
        b"DK" => 18,
        b"DO" => 28,
        b"EE" => 20,
        b"EG" => 29,
        b"ES" => 24,
        b"FI" => 18,
        b"FK" => 18,
        b"FO" => 18,
        b"FR" => 27,
        b"GB" => 22,
        b"GE" => 22,
        b"GI" => 23,
        b"GL" => 18,
        b"GR" => 27,
        b"GT" => 28,
        b"HR" => 21,
        b"HU" => 28,
        b"IE" => 22,
        b"IL" => 23,
        b"IQ" => 23,
        b"IS" => 26,
        b"IT" => 27,
        b"JO" => 30,
        b"KW" => 30,
        b"KZ" => 20,
        b"LB" => 28,
        b"LC" => 32,
        b"LI" => 21,
        b"LT" => 20,
        b"LU" => 20,
        b"LV" => 21,
        b"LY" => 25,
        b"MC" => 27,
        b"MD" => 24,
        b"ME" => 22,
        b"MK" => 19,
        b"MN" => 20,
        b"MR" => 27,
        b"MT" => 31,
        b"MU" => 30,
        b"NI" => 28,
        b"NL" => 18,
        b"NO" => 15,
        b"OM" => 23,
        b"PK" => 24,
        b"PL" => 28,
        b"PS" => 29,
        b"PT" => 25,
        b"QA" => 29,
        b"RO" => 24,
        b"RS" => 22,
        b"RU" => 33,
        b"SA" => 24,
        b"SC" => 31,
        b"SD" => 18,
        b"SE" => 24,
        b"SI" => 19,
        b"SK" => 24,
        b"SM" => 27,
        b"SO" => 23,
        b"ST" => 25,
        b"SV" => 28,
        b"TL" => 23,
        b"TN" => 24,
        b"TR" => 26,
        b"UA" => 29,
        b"VA" => 22,
        b"VG" => 24,
        b"XK" => 20,
        b"YE" => 30,
        _ => return None,
    })
}

/// ISO 7064 mod 97-10 over an IBAN (upper-case ASCII letters and digits,
/// no separators): the remainder of the rearranged number must be 1.
pub(crate) fn iban_mod97(iban: &[u8]) -> bool {
    if iban.len() < 5 {
        return false;
    }
    let mut rem = 0u32;
    for &c in iban[4..].iter().chain(&iban[..4]) {
        match c {
            b'0'..=b'9' => rem = (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => rem = (rem * 100 + u32::from(c - b'A') + 10) % 97,
            _ => return false,
        }
    }
    rem == 1
}

/// US Social Security number rules: area not 000, 666 or 900–999; group not
/// 00; serial not 0000; and not one of the numbers published in adverts.
pub(crate) fn ssn_valid(d: &[u8]) -> bool {
    if d.len() != 9 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let area = prefix_num(d, 3);
    let group = prefix_num(&d[3..], 2);
    let serial = prefix_num(&d[5..], 4);
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
        return false;
    }
    // Woolworth's wallet card and the 1962 advert number; runs of one digit.
    if d == b"078051120" || d == b"219099999" || d.iter().all(|&c| c == d[0]) || d == b"123456789" {
        return false;
    }
    true
}

/// Days in a month (leap years by the Gregorian rule).
pub(crate) fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
        2 => 28,
        _ => 0,
    }
}

fn valid_date(year: u32, month: u32, day: u32) -> bool {
    (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month)
}

/// China resident identity number (GB 11643-1999): 6-digit region code with
/// a known province, birth date YYYYMMDD between 1900 and 2030, 3-digit
/// sequence, ISO 7064 MOD 11-2 check character (`0`–`9` or `X`).
pub(crate) fn cn_id_valid(id: &[u8]) -> bool {
    if id.len() != 18 || !id[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let province = prefix_num(id, 2);
    if !matches!(province, 11..=15 | 21..=23 | 31..=37 | 41..=46 | 50..=54 | 61..=65 | 71 | 81..=83 | 91) {
        return false;
    }
    let year = prefix_num(&id[6..], 4);
    let month = prefix_num(&id[10..], 2);
    let day = prefix_num(&id[12..], 2);
    if !(1900..=2030).contains(&year) || !valid_date(year, month, day) {
        return false;
    }
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = id[..17].iter().zip(W).map(|(&d, w)| u32::from(d - b'0') * w).sum();
    let check = b"10X98765432"[(sum % 11) as usize];
    id[17].to_ascii_uppercase() == check
}

/// Indonesian population identity number (NIK): province code of a real
/// province, regency and district codes not 00, birth date DDMMYY with 40
/// added to the day for women, serial not 0000.
pub(crate) fn nik_valid(d: &[u8]) -> bool {
    if d.len() != 16 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let province = prefix_num(d, 2);
    if !matches!(province, 11..=19 | 21 | 31..=36 | 51..=53 | 61..=65 | 71..=76 | 81 | 82 | 91..=97) {
        return false;
    }
    let regency = prefix_num(&d[2..], 2);
    let district = prefix_num(&d[4..], 2);
    if regency == 0 || district == 0 {
        return false;
    }
    let mut day = prefix_num(&d[6..], 2);
    if day > 40 {
        day -= 40;
    }
    let month = prefix_num(&d[8..], 2);
    let year = prefix_num(&d[10..], 2);
    // The century is unknown; 2000 is a leap year like every year ≡ 0 mod 4 here.
    if !valid_date(2000 + year, month, day) {
        return false;
    }
    prefix_num(&d[12..], 4) != 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn luhn_cases() {
        for (s, ok) in [
            ("4111111111111111", true),
            ("4111111111111112", false),
            ("378282246310005", true),
            ("6011111111111117", true),
            ("0", true),
            ("79927398713", true),
            ("79927398710", false),
        ] {
            assert_eq!(luhn(s.as_bytes()), ok, "{s}");
        }
    }

    #[test]
    fn networks() {
        for (s, net) in [
            ("4111111111111111", Some("visa")),
            ("5500000000000004", Some("mastercard")),
            ("2221000000000009", Some("mastercard")),
            ("378282246310005", Some("amex")),
            ("30569309025904", Some("diners")),
            ("6011111111111117", Some("discover")),
            ("3530111333300000", Some("jcb")),
            ("6200000000000005", Some("unionpay")),
            ("501864667909", Some("maestro")),
            ("9999999999999995", None),
            ("4111111111111", Some("visa")),
            ("41111111111111", None),
        ] {
            assert_eq!(card_network(s.as_bytes()), net, "{s}");
        }
    }

    #[test]
    fn iban_cases() {
        for (s, ok) in [
            ("GB82WEST12345698765432", true),
            ("GB82WEST12345698765431", false),
            ("DE89370400440532013000", true),
            ("NL91ABNA0417164300", true),
            ("FR1420041010050500013M02606", true),
            ("NO9386011117947", true),
            ("DE89370400440532013001", false),
        ] {
            assert_eq!(iban_mod97(s.as_bytes()), ok, "{s}");
            assert_eq!(iban_length(&s.as_bytes()[..2]), Some(s.len()), "{s}");
        }
    }

    #[test]
    fn ssn_cases() {
        for (s, ok) in [
            ("853371694", true),
            ("000123456", false),
            ("666123456", false),
            ("901123456", false),
            ("123001234", false),
            ("123450000", false),
            ("078051120", false),
            ("123456789", false),
            ("12345678", false),
        ] {
            assert_eq!(ssn_valid(s.as_bytes()), ok, "{s}");
        }
    }

    #[test]
    fn cn_id_cases() {
        for (s, ok) in [
            ("11010519491231002X", true),
            ("11010519491231002x", true),
            ("110105194912310021", false),
            ("440524188001010014", false), // born 1880: outside the window
            ("990105194912310029", false), // no province 99
            ("11010519490231002X", false), // 31 February
        ] {
            assert_eq!(cn_id_valid(s.as_bytes()), ok, "{s}");
        }
    }

    #[test]
    fn nik_cases() {
        for (s, ok) in [
            ("3171011203900001", true),  // Jakarta, 12 March 1990, man
            ("3171015203900001", true),  // the same date for a woman (+40)
            ("3171017203900001", false), // day 32
            ("3171011213900001", false), // month 13
            ("9971011203900001", false), // no province 99
            ("3171011203900000", false), // serial 0000
            ("3100011203900001", false), // regency 00
        ] {
            assert_eq!(nik_valid(s.as_bytes()), ok, "{s}");
        }
    }
}
