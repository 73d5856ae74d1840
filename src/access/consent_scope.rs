//! The categories of a patient's information that a consent can cover: what the policy
//! decides clinical access by. `consent` stores and manages the grants.
use async_graphql::Enum;
use serde::{Deserialize, Serialize};

/// A category of a patient's information that a consent can cover.
#[derive(
    Enum, Copy, Clone, Debug, Eq, PartialEq, Hash, Serialize, Deserialize, PartialOrd, Ord,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsentScope {
    /// Sharing demographics beyond the care team's need (exports, third parties).
    DemographicsSharing,
    /// Medical records and notes.
    Records,
    Medications,
    Allergies,
    Immunizations,
    Documents,
    Messages,
    Billing,
    /// Use of de-identified data in research extracts.
    Research,
    /// SENSITIVE records (substance-use treatment under 42 CFR Part 2, HIV, reproductive
    /// and mental health): needed besides the record's own category.
    Sensitive,
}

impl ConsentScope {
    pub const ALL: [ConsentScope; 10] = [
        ConsentScope::DemographicsSharing,
        ConsentScope::Records,
        ConsentScope::Medications,
        ConsentScope::Allergies,
        ConsentScope::Immunizations,
        ConsentScope::Documents,
        ConsentScope::Messages,
        ConsentScope::Billing,
        ConsentScope::Research,
        ConsentScope::Sensitive,
    ];

    /// Clinical categories: what a care-team provider needs consent for.
    pub const CLINICAL: [ConsentScope; 6] = [
        ConsentScope::Records,
        ConsentScope::Medications,
        ConsentScope::Allergies,
        ConsentScope::Immunizations,
        ConsentScope::Documents,
        ConsentScope::Messages,
    ];

    /// Stored form: sorted, de-duplicated, comma-separated.
    pub fn join(scopes: &[ConsentScope]) -> String {
        let mut v: Vec<_> = scopes.to_vec();
        v.sort();
        v.dedup();
        v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
    }

    pub fn split(stored: &str) -> Vec<ConsentScope> {
        stored.split(',').filter_map(ConsentScope::parse).collect()
    }
}

crate::text_enum!(ConsentScope {
    DemographicsSharing => "DEMOGRAPHICS_SHARING",
    Records => "RECORDS",
    Medications => "MEDICATIONS",
    Allergies => "ALLERGIES",
    Immunizations => "IMMUNIZATIONS",
    Documents => "DOCUMENTS",
    Messages => "MESSAGES",
    Billing => "BILLING",
    Research => "RESEARCH",
    Sensitive => "SENSITIVE",
});

impl ConsentScope {
    /// This scope's bit in a [`crate::identity::Standing`]'s consent set.
    fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// The set of `scopes` as bits.
    pub(super) fn bits(scopes: &[ConsentScope]) -> u32 {
        scopes.iter().fold(0, |bits, s| bits | s.bit())
    }

    /// The scopes whose bits are set, in [`ConsentScope::ALL`]'s order.
    pub(super) fn from_bits(bits: u32) -> Vec<ConsentScope> {
        ConsentScope::ALL
            .into_iter()
            .filter(|s| bits & s.bit() != 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_sorted() {
        let s = ConsentScope::join(&[
            ConsentScope::Records,
            ConsentScope::Allergies,
            ConsentScope::Records,
        ]);
        assert_eq!(s, "RECORDS,ALLERGIES");
        assert_eq!(
            ConsentScope::split(&s),
            vec![ConsentScope::Records, ConsentScope::Allergies]
        );
    }

    #[test]
    fn bits_round_trip() {
        assert_eq!(ConsentScope::bits(&[]), 0);
        assert!(ConsentScope::from_bits(0).is_empty());
        for s in ConsentScope::ALL {
            assert_eq!(ConsentScope::from_bits(ConsentScope::bits(&[s])), vec![s]);
        }
        let all = ConsentScope::bits(&ConsentScope::ALL);
        assert_eq!(all.count_ones() as usize, ConsentScope::ALL.len());
        assert_eq!(ConsentScope::from_bits(all), ConsentScope::ALL.to_vec());
    }
}
