//! CVX vaccine codes, for validating the `cvxCode` of immunization writes.
//!
//! The table is the CDC CVX code set ("CVX - Vaccines Administered", maintained by CDC/NCIRD for
//! Immunization Information Systems, <https://www2a.cdc.gov/vaccines/iis/iisstandards/vaccines.asp?rpt=cvx>):
//! code, short description and vaccine status only. It lives in `cvx.tsv` next to this file, whose
//! header says which copy it was transcribed from and its date (the 2025-07-15 code set, from the
//! HL7 FHIR `http://hl7.org/fhir/sid/cvx` code system in the `fhir.tx.support` package). To update
//! it, replace the data lines from a newer CDC copy and the header with where it came from.
//!
//! The file is compiled in with `include_str!` and parsed once, on first use. A malformed line,
//! an unknown status or a duplicate code is a bug in the data file and panics rather than being
//! skipped; the unit tests parse the whole file, so such a file does not get past `cargo test`.

use std::collections::HashMap;
use std::sync::LazyLock;

/// CDC's availability status of a vaccine in the US ("Vaccine Status" column).
#[derive(Copy, Clone, Debug, Eq, PartialEq)]
pub enum CvxStatus {
    /// Currently available administrable vaccine.
    Active,
    /// No longer available, but found in historical records (or formulation unknown).
    Inactive,
    /// Available outside the US only.
    NonUs,
    /// Never available, and not in the pipeline.
    NeverActive,
    /// Expected to become active in the future.
    Pending,
}

impl CvxStatus {
    /// The status as CDC spells it in the code set.
    fn from_cdc(text: &str) -> Option<Self> {
        Some(match text {
            "Active" => Self::Active,
            "Inactive" => Self::Inactive,
            "Non-US" => Self::NonUs,
            "Never Active" => Self::NeverActive,
            "Pending" => Self::Pending,
            _ => return None,
        })
    }
}

/// One CVX code.
#[derive(Debug, Eq, PartialEq)]
pub struct Vaccine {
    /// The code as CDC writes it (e.g. "08", "141").
    pub code: &'static str,
    /// CDC's short description.
    pub name: &'static str,
    pub status: CvxStatus,
}

const DATA: &str = include_str!("cvx.tsv");

/// Codes keyed by numeric value, so "8" and "08" are the same code.
static TABLE: LazyLock<HashMap<u16, Vaccine>> =
    LazyLock::new(|| parse(DATA).unwrap_or_else(|e| panic!("src/records/cvx.tsv: {e}")));

/// The numeric value of a CVX code: 1 to 3 ASCII digits, nothing else.
fn code_number(code: &str) -> Option<u16> {
    if code.is_empty() || code.len() > 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    code.parse().ok()
}

/// Parses the table: `#` comment lines, blank lines, and `code<TAB>name<TAB>status` lines.
/// Any other line is an error naming its line number, as is a repeated code.
fn parse(data: &'static str) -> Result<HashMap<u16, Vaccine>, String> {
    let mut table = HashMap::new();
    for (index, line) in data.lines().enumerate() {
        let n = index + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&'static str> = line.split('\t').collect();
        let [code, name, status] = fields[..] else {
            return Err(format!(
                "line {n}: expected 3 tab-separated fields, found {}: {line:?}",
                fields.len()
            ));
        };
        let number = code_number(code).ok_or_else(|| format!("line {n}: bad CVX code {code:?}"))?;
        if name.is_empty() || name.trim() != name {
            return Err(format!("line {n}: bad short description {name:?}"));
        }
        let status = CvxStatus::from_cdc(status)
            .ok_or_else(|| format!("line {n}: bad status {status:?}"))?;
        if let Some(earlier) = table.insert(number, Vaccine { code, name, status }) {
            return Err(format!(
                "line {n}: CVX code {code:?} repeats code {:?}",
                earlier.code
            ));
        }
    }
    Ok(table)
}

/// The CVX code `code` (surrounding whitespace ignored; "8" and "08" both find 08), or `None`
/// if it is not 1 to 3 digits or not in the code set.
pub fn vaccine(code: &str) -> Option<&'static Vaccine> {
    TABLE.get(&code_number(code.trim())?)
}

/// How many codes the table holds.
pub fn count() -> usize {
    TABLE.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn known_codes_are_found_with_their_names() {
        let hep_b = vaccine("08").unwrap();
        assert_eq!(hep_b.code, "08");
        assert_eq!(hep_b.name, "Hep B, adolescent or pediatric");
        assert_eq!(hep_b.status, CvxStatus::Active);

        assert_eq!(vaccine("20").unwrap().name, "DTaP");
        assert_eq!(vaccine("03").unwrap().name, "MMR");

        let flu = vaccine("141").unwrap();
        assert_eq!(flu.code, "141");
        assert!(flu.name.starts_with("Influenza"), "{}", flu.name);

        let pfizer = vaccine("208").unwrap();
        assert_eq!(pfizer.name, "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose");
        assert_eq!(pfizer.status, CvxStatus::Inactive);

        assert_eq!(vaccine("999").unwrap().name, "unknown");
    }

    #[test]
    fn every_status_spelling_is_read() {
        assert_eq!(vaccine("01").unwrap().status, CvxStatus::Inactive);
        // 170: DTAP/IPV/HIB - non-US; 99: RESERVED - do not use.
        assert_eq!(vaccine("170").unwrap().status, CvxStatus::NonUs);
        assert_eq!(vaccine("99").unwrap().status, CvxStatus::Inactive);
        assert!(TABLE.values().any(|v| v.status == CvxStatus::NeverActive));
        assert_eq!(CvxStatus::from_cdc("Pending"), Some(CvxStatus::Pending));
        assert_eq!(CvxStatus::from_cdc("active"), None);
    }

    #[test]
    fn codes_are_normalised_by_numeric_value() {
        for code in ["08", "8", "008", " 08 ", "\t8\n"] {
            assert_eq!(vaccine(code).map(|v| v.code), Some("08"), "{code:?}");
        }
        assert_eq!(vaccine("3").map(|v| v.code), Some("03"));
        assert_eq!(vaccine("0141"), None, "CDC codes are at most 3 digits");
    }

    #[test]
    fn unknown_or_malformed_codes_are_none() {
        for code in [
            "9999", "abc", "", "   ", "0", "00", "100000", "-8", "+8", "8a", "1 41", "٠٨", "08.0",
        ] {
            assert!(vaccine(code).is_none(), "{code:?}");
        }
    }

    #[test]
    fn every_line_of_the_file_parses() {
        let table = parse(DATA).unwrap();
        let data_lines = DATA
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(table.len(), data_lines);
        assert_eq!(count(), data_lines);
        assert!(count() >= 250, "only {} codes", count());
    }

    #[test]
    fn the_file_has_no_duplicate_codes() {
        let mut seen = HashSet::new();
        for line in DATA
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let code = line.split('\t').next().unwrap();
            assert!(
                seen.insert(code_number(code).unwrap()),
                "duplicate {code:?}"
            );
        }
    }

    #[test]
    fn the_file_names_its_source() {
        assert!(DATA.starts_with('#'));
        assert!(
            DATA.contains("https://www2a.cdc.gov/vaccines/iis/iisstandards/vaccines.asp?rpt=cvx")
        );
        assert!(DATA.contains("transcribed"));
    }

    #[test]
    fn bad_lines_are_errors_not_skipped() {
        let bad = [
            "08\tHep B, adolescent or pediatric",
            "08\tHep B\tActive\textra",
            "08 Hep B Active",
            "abc\tHep B\tActive",
            "0008\tHep B\tActive",
            "08\t\tActive",
            "08\t Hep B\tActive",
            "08\tHep B\tactive",
            "08\tHep B\tRetired",
            " # not a comment",
            "08\tHep B\tActive\n8\tHep B again\tActive",
        ];
        for data in bad {
            assert!(parse(data).is_err(), "{data:?}");
        }
        let good = parse("# comment\n\n08\tHep B\tActive\n20\tDTaP\tNon-US\n").unwrap();
        assert_eq!(good.len(), 2);
        assert_eq!(good[&20].status, CvxStatus::NonUs);
    }
}
