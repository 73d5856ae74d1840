//! Secure messaging between a patient and their care team: threads, messages (never edited
//! or deleted; retractable by their sender for a few minutes), read state, archive, and
//! attachments that point at the patient's clinical documents. Who may do what is
//! `access::messaging`'s decision.
pub mod graphql;
pub mod live;
pub mod service;
pub mod writer;
