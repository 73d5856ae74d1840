//! Medical records: one family of six kinds (lab results, visit notes, medications,
//! allergies, immunizations, documents) in one table, each kind read under its consent
//! category. Adding a kind is its content struct (`kinds`), its GraphQL type (`graphql`,
//! one `record_type!`), its FHIR mapping (`fhir`) and a consent category in `access`.
//! Patients ask to correct their records through `corrections` (45 CFR 164.526).
pub mod corrections;
pub mod cvx;
pub mod family;
pub mod fhir;
pub mod graphql;
pub mod kinds;
pub mod reads;
pub mod scope;
pub mod shares;
pub mod types;
