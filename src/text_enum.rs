//! One mapping between an enum and its stored text (the same words as its GraphQL values):
//! `as_str`, `parse` and `VARIANTS`, written once per enum as a table, so the stored text
//! and the parser cannot drift apart.

/// `text_enum!(Severity { Mild => "MILD", Severe => "SEVERE" });`
#[macro_export]
macro_rules! text_enum {
    ($t:ident { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// Every variant, in declaration order.
            pub const VARIANTS: &'static [$t] = &[$($t::$v),*];

            /// The stored text.
            pub fn as_str(self) -> &'static str {
                match self { $($t::$v => $s),* }
            }

            /// The variant stored as `s` (exact match).
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($t::$v),)* _ => None }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    /// Every mapped enum reads back what it writes, and its words are distinct.
    macro_rules! round_trip {
        ($($t:ty),*) => {$(
            let words: Vec<&str> = <$t>::VARIANTS.iter().map(|v| v.as_str()).collect();
            for v in <$t>::VARIANTS {
                assert_eq!(<$t>::parse(v.as_str()), Some(*v));
            }
            let mut distinct = words.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), words.len(), "{}", stringify!($t));
            assert_eq!(<$t>::parse("no such value"), None);
        )*};
    }

    #[test]
    fn every_mapping_round_trips() {
        use crate::access::Role;
        use crate::appointments::types::AppointmentStatus;
        use crate::audit::Outcome;
        use crate::consent::types::ConsentScope;
        use crate::patients::types::{GenderIdentity, SexAtBirth};
        use crate::records::types::{AllergySeverity, AllergyStatus, CorrectionStatus};
        round_trip!(
            Role,
            Outcome,
            ConsentScope,
            SexAtBirth,
            GenderIdentity,
            AllergySeverity,
            AllergyStatus,
            AppointmentStatus,
            CorrectionStatus
        );
        assert_eq!(ConsentScope::VARIANTS, ConsentScope::ALL.as_slice());
    }
}
