//! SeaORM entities for Caregraph. No business logic and no GraphQL derives here: the API maps
//! these explicitly, so a new column never leaks. `*_enc` fields hold ciphertext only.
pub mod allergies;
pub mod appointments;
pub mod audit_head;
pub mod audit_log;
pub mod billing_statements;
pub mod care_team;
pub mod consents;
pub mod correction_requests;
pub mod coverages;
pub mod emergency_access;
pub mod idempotency_keys;
pub mod ledger_entries;
pub mod medical_record_versions;
pub mod medical_records;
pub mod message_attachments;
pub mod message_threads;
pub mod messages;
pub mod patients;
pub mod payments;
pub mod provider_time_off;
pub mod providers;
pub mod record_blobs;
pub mod record_shares;
pub mod sandbox_charges;
pub mod thread_participants;
pub mod users;
