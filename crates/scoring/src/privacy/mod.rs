//! Privacy: entities (with validators) and sensitive topics, scored 0..1.

use crate::Turn;

/// The kinds of sensitive span Tandem recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    Email,
    Phone,
    CreditCard,
    Iban,
    UsSsn,
    CnResidentId,
    IdNik,
    IpAddress,
    Secret,
    Person,
    StreetAddress,
    Health,
    Finance,
    Legal,
    Religion,
    Sexuality,
}

impl Label {
    /// The stable name used in policies, logs and the API (`credit_card`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Email => "email",
            Label::Phone => "phone",
            Label::CreditCard => "credit_card",
            Label::Iban => "iban",
            Label::UsSsn => "us_ssn",
            Label::CnResidentId => "cn_resident_id",
            Label::IdNik => "id_nik",
            Label::IpAddress => "ip_address",
            Label::Secret => "secret",
            Label::Person => "person",
            Label::StreetAddress => "street_address",
            Label::Health => "health",
            Label::Finance => "finance",
            Label::Legal => "legal",
            Label::Religion => "religion",
            Label::Sexuality => "sexuality",
        }
    }

    /// Topics mark a whole request as sensitive; they are not values to redact.
    pub fn is_topic(self) -> bool {
        matches!(self, Label::Health | Label::Finance | Label::Legal | Label::Religion | Label::Sexuality)
    }
}

/// One sensitive span. Offsets are within the message's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    pub label: Label,
    /// Index of the message in the conversation.
    pub message: usize,
    /// Character offsets (Unicode scalar values), as the API reports them.
    pub start: usize,
    pub end: usize,
    /// Byte offsets, for redaction.
    pub byte_start: usize,
    pub byte_end: usize,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PrivacyReport {
    pub score: f32,
    pub entities: Vec<Entity>,
}

pub struct PrivacyScanner {}

impl PrivacyScanner {
    pub fn new() -> Self {
        PrivacyScanner {}
    }

    pub fn scan(&self, _turns: &[Turn<'_>]) -> PrivacyReport {
        PrivacyReport::default()
    }
}

impl Default for PrivacyScanner {
    fn default() -> Self {
        Self::new()
    }
}
