//! Validated patient values ("parse, don't validate"). Each parser returns
//! `AppError::Validation` naming the field, never echoing the input.
use async_graphql::{Enum, InputObject, SimpleObject};
use chrono::{Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{AppError, AppResult};
use crate::input::bounded_text;
pub use crate::input::parse_reason;

/// A person's name part: trimmed, inner runs of spaces collapsed, 1–100 characters. Unicode
/// letters, combining marks, spaces, apostrophes (' and ’), hyphens and periods are
/// welcome; digits, `<` and `>`, and control and format characters (general category Cc,
/// Cf: bidirectional overrides and isolates, zero-width spaces and joiners, the BOM) are
/// refused, since a name is shown to staff and patients, and an invisible or reordering
/// character makes one record look like another, or a name look like markup.
pub fn parse_name(field: &'static str, raw: &str) -> AppResult<String> {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    // Looked for before whitespace is collapsed: a tab, newline or NEL inside a name is a
    // control character too, not a space.
    if raw.trim().chars().any(|c| {
        matches!(
            c.general_category(),
            GeneralCategory::Control | GeneralCategory::Format
        )
    }) {
        return Err(AppError::validation(
            field,
            "must not contain control, formatting or invisible characters",
        ));
    }
    let collapsed = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let n = collapsed.chars().count();
    if n == 0 {
        return Err(AppError::validation(field, "must not be empty"));
    }
    if n > 100 {
        return Err(AppError::validation(
            field,
            "must be at most 100 characters",
        ));
    }
    if collapsed.chars().any(|c| c.is_numeric()) {
        return Err(AppError::validation(field, "must not contain digits"));
    }
    if collapsed.contains(['<', '>']) {
        return Err(AppError::validation(field, "must not contain < or >"));
    }
    Ok(collapsed)
}

/// Normalised form used for blind-index search on names.
pub fn name_index_form(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// In the past and at most 120 years ago.
pub fn parse_birth_date(d: NaiveDate) -> AppResult<NaiveDate> {
    let today = Utc::now().date_naive();
    if d >= today {
        return Err(AppError::validation("birthDate", "must be in the past"));
    }
    let oldest = today.with_year(today.year() - 120).unwrap_or(today);
    if d < oldest {
        return Err(AppError::validation(
            "birthDate",
            "must be at most 120 years ago",
        ));
    }
    Ok(d)
}

/// Trimmed, lower-cased, one `@`, a dotted domain, no spaces; at most 254 characters.
pub fn parse_email(raw: &str) -> AppResult<String> {
    let e = raw.trim().to_lowercase();
    let bad = || AppError::validation("email", "must be an address like name@example.org");
    if e.len() > 254 || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = e.split_once('@').ok_or_else(bad)?;
    if local.is_empty() || local.len() > 64 || domain.contains('@') {
        return Err(bad());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2
        || labels.iter().any(|l| {
            l.is_empty()
                || l.starts_with('-')
                || l.ends_with('-')
                || !l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
    {
        return Err(bad());
    }
    Ok(e)
}

/// E.164: `+` then 8–15 digits, first digit not 0. Spaces, dashes, dots and parentheses
/// are accepted on input and removed.
pub fn parse_phone(field: &'static str, raw: &str) -> AppResult<String> {
    let bad = || {
        AppError::validation(
            field,
            "must be an international number in E.164 form, e.g. +15555550123",
        )
    };
    let t = raw.trim();
    let rest = t.strip_prefix('+').ok_or_else(bad)?;
    let digits: String = rest
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    if !(8..=15).contains(&digits.len())
        || !digits.chars().all(|c| c.is_ascii_digit())
        || digits.starts_with('0')
    {
        return Err(bad());
    }
    Ok(format!("+{digits}"))
}

/// A well-formed BCP 47 language tag, in canonical case (`en-US`, `zh-Hant-TW`).
pub fn parse_language(raw: &str) -> AppResult<String> {
    let tag = language_tags::LanguageTag::parse(raw.trim()).map_err(|_| {
        AppError::validation(
            "preferredLanguage",
            "must be a BCP 47 language tag, e.g. en-US",
        )
    })?;
    tag.canonicalize().map(|t| t.to_string()).map_err(|_| {
        AppError::validation(
            "preferredLanguage",
            "must be a BCP 47 language tag, e.g. en-US",
        )
    })
}

/// US Social Security number: nine digits (dashes and spaces allowed on input).
pub fn parse_ssn(raw: &str) -> AppResult<String> {
    let digits: String = raw.chars().filter(|c| !matches!(c, '-' | ' ')).collect();
    if digits.len() != 9 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(AppError::validation("ssn", "must be nine digits"));
    }
    Ok(digits)
}

/// Medical record number: 4–20 letters, digits or dashes, stored upper-case.
pub fn parse_mrn(raw: &str) -> AppResult<String> {
    let m = raw.trim().to_uppercase();
    if !(4..=20).contains(&m.len()) || !m.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(AppError::validation(
            "mrn",
            "must be 4 to 20 letters, digits or dashes",
        ));
    }
    Ok(m)
}

/// ISO 3166-1 alpha-2 codes (officially assigned).
const ISO_3166_ALPHA2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

pub fn parse_country(raw: &str) -> AppResult<String> {
    let c = raw.trim().to_uppercase();
    if c.len() == 2 && ISO_3166_ALPHA2.split(' ').any(|x| x == c) {
        Ok(c)
    } else {
        Err(AppError::validation(
            "address.country",
            "must be an ISO 3166-1 alpha-2 code, e.g. US",
        ))
    }
}

/// Sex assigned at birth.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub enum SexAtBirth {
    Female,
    Male,
    Intersex,
    Unknown,
    Undisclosed,
}

/// Gender identity; `OTHER` comes with free text.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub enum GenderIdentity {
    Woman,
    Man,
    Nonbinary,
    Other,
    Undisclosed,
}

crate::text_enum!(SexAtBirth { Female => "FEMALE", Male => "MALE", Intersex => "INTERSEX", Unknown => "UNKNOWN", Undisclosed => "UNDISCLOSED" });
crate::text_enum!(GenderIdentity { Woman => "WOMAN", Man => "MAN", Nonbinary => "NONBINARY", Other => "OTHER", Undisclosed => "UNDISCLOSED" });

/// A postal address.
#[derive(SimpleObject, InputObject, Clone, Default, Serialize, Deserialize, PartialEq)]
#[graphql(input_name = "AddressInput")]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub state_province: Option<String>,
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2; required when a postal code is given.
    pub country: Option<String>,
}

impl Address {
    pub fn parse(a: Address) -> AppResult<Address> {
        let opt = |field, v: Option<String>, max| -> AppResult<Option<String>> {
            match v {
                Some(s) if !s.trim().is_empty() => bounded_text(field, &s, max).map(Some),
                _ => Ok(None),
            }
        };
        let out = Address {
            line1: opt("address.line1", a.line1, 200)?,
            line2: opt("address.line2", a.line2, 200)?,
            city: opt("address.city", a.city, 100)?,
            state_province: opt("address.stateProvince", a.state_province, 100)?,
            postal_code: opt("address.postalCode", a.postal_code, 20)?,
            country: match a.country {
                Some(c) if !c.trim().is_empty() => Some(parse_country(&c)?),
                _ => None,
            },
        };
        if out.postal_code.is_some() && out.country.is_none() {
            return Err(AppError::validation(
                "address.country",
                "is required when a postal code is given",
            ));
        }
        Ok(out)
    }
}

/// Who to call in an emergency.
#[derive(SimpleObject, InputObject, Clone, Serialize, Deserialize, PartialEq)]
#[graphql(input_name = "EmergencyContactInput")]
pub struct EmergencyContact {
    pub name: String,
    pub relationship: String,
    /// E.164.
    pub phone: String,
}

impl EmergencyContact {
    pub fn parse(c: EmergencyContact) -> AppResult<EmergencyContact> {
        Ok(EmergencyContact {
            name: parse_name("emergencyContact.name", &c.name)?,
            relationship: bounded_text("emergencyContact.relationship", &c.relationship, 50)?,
            phone: parse_phone("emergencyContact.phone", &c.phone)?,
        })
    }
}

pub fn parse_gender_other(raw: &str) -> AppResult<String> {
    bounded_text("genderIdentityOther", raw, 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_name("givenName", "  Zoë   Ann ").unwrap(), "Zoë Ann");
        assert!(parse_name("givenName", "R2D2").is_err());
        assert!(parse_name("givenName", "   ").is_err());
        assert!(parse_name("givenName", &"a".repeat(101)).is_err());
        assert!(parse_name("givenName", &"é".repeat(100)).is_ok());
    }

    #[test]
    fn names_keep_letters_marks_and_name_punctuation() {
        for ok in [
            "Zoë",
            "O'Brien",
            "O\u{2019}Brien",
            "Jean-Luc",
            "St. John",
            // "José" with a combining acute accent (U+0301), not the precomposed é.
            "Jose\u{301}",
            "Nguyễn",
            "Ólafsdóttir",
            "Øystein",
            "Łukasz",
            "Мария",
            "Αλέξανδρος",
            "محمد",
            "שרה",
            "김민준",
            "山田",
            "देवनागरी",
            "Mary Ann",
        ] {
            assert_eq!(
                parse_name("givenName", ok).ok().as_deref(),
                Some(ok),
                "{ok:?}"
            );
        }
    }

    #[test]
    fn names_refuse_invisible_reordering_and_markup_characters() {
        let refused: Vec<char> = [
            // Bidirectional embeddings and overrides, isolates.
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            // Zero-width space, non-joiner, joiner; byte-order mark.
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{FEFF}',
            // Other format characters: marks, soft hyphen, word joiner, invisible operators,
            // Arabic letter mark, Mongolian vowel separator, tags.
            '\u{200E}',
            '\u{200F}',
            '\u{00AD}',
            '\u{2060}',
            '\u{2062}',
            '\u{061C}',
            '\u{180E}',
            '\u{E0041}',
            // Controls (C0, DEL, C1), whitespace ones included.
            '\t',
            '\n',
            '\r',
            '\u{0000}',
            '\u{0007}',
            '\u{001B}',
            '\u{007F}',
            '\u{0085}',
            '\u{009B}',
            // Markup.
            '<',
            '>',
        ]
        .into();
        for c in refused {
            for raw in [
                format!("Ann{c}e"),
                format!("Ann {c}e"),
                format!("A{c}{c}nne"),
            ] {
                let err = parse_name("familyName", &raw).expect_err(&format!("{c:?}"));
                let AppError::Validation { field, reason } = &err else {
                    panic!("{c:?}: not a validation error: {err:?}");
                };
                assert_eq!(*field, "familyName");
                // A fixed reason: the message never quotes the input.
                assert!(
                    [
                        "must not contain control, formatting or invisible characters",
                        "must not contain < or >",
                    ]
                    .contains(reason),
                    "{c:?}: {reason}"
                );
                assert!(!err.to_string().contains("Ann"), "{err}");
            }
        }
        // Ahead of or after a name, invisible characters are refused too; surrounding
        // whitespace (a pasted newline) is only trimmed.
        for raw in [
            "\u{202E}Anne",
            "Anne\u{FEFF}",
            "\u{200B} Anne",
            "<Anne",
            "Anne>",
        ] {
            assert!(parse_name("givenName", raw).is_err(), "{raw:?}");
        }
        assert_eq!(parse_name("givenName", "\tAnne\n").unwrap(), "Anne");
        let markup = parse_name("givenName", "<b>Mallory</b>").unwrap_err();
        assert!(!markup.to_string().contains("Mallory"));
        // The emergency contact's name goes through the same parser.
        let contact = EmergencyContact {
            name: "Pat\u{202E}kcaP".into(),
            relationship: "partner".into(),
            phone: "+442079460001".into(),
        };
        assert!(matches!(
            EmergencyContact::parse(contact),
            Err(AppError::Validation {
                field: "emergencyContact.name",
                ..
            })
        ));
    }

    #[test]
    fn phones_and_emails() {
        assert_eq!(
            parse_phone("phone", "+1 (555) 555-0123").unwrap(),
            "+15555550123"
        );
        assert!(parse_phone("phone", "555-0123").is_err());
        assert!(parse_phone("phone", "+0123456789").is_err());
        assert_eq!(
            parse_email(" Test.Person@Example.ORG ").unwrap(),
            "test.person@example.org"
        );
        for bad in ["no-at", "a@b", "a b@c.de", "@x.org", "a@@x.org", "a@-x.org"] {
            assert!(parse_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_languages_addresses() {
        let today = Utc::now().date_naive();
        assert!(parse_birth_date(today).is_err());
        assert!(parse_birth_date(NaiveDate::from_ymd_opt(1890, 1, 1).unwrap()).is_err());
        assert!(parse_birth_date(NaiveDate::from_ymd_opt(1980, 2, 29).unwrap()).is_ok());
        assert_eq!(parse_language("en-us").unwrap(), "en-US");
        assert!(parse_language("not a tag").is_err());
        let a = Address {
            postal_code: Some("12345".into()),
            ..Default::default()
        };
        assert!(Address::parse(a.clone()).is_err());
        let ok = Address::parse(Address {
            country: Some("us".into()),
            ..a
        })
        .unwrap();
        assert_eq!(ok.country.as_deref(), Some("US"));
        assert!(parse_country("XX").is_err());
    }
}

/// `Debug` for types that hold plaintext PHI: the type's name only, never a value, so a
/// `{:?}` in a log line or a panic message cannot leak one.
#[macro_export]
macro_rules! redacted_debug {
    ($($t:ty),* $(,)?) => {
        $(impl ::std::fmt::Debug for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($t)).finish_non_exhaustive()
            }
        })*
    };
}

redacted_debug!(Address, EmergencyContact);
