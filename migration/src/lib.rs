//! Portable schema migrations (SQLite and PostgreSQL).
pub use sea_orm_migration::prelude::*;

mod m20261124_120000_core;
mod m20261124_120100_audit_append_only;
mod m20261124_130000_patient_email_not_unique;
mod m20261201_120000_medical_records;
mod m20261201_130000_appointments;
mod m20261201_140000_shares_and_corrections;
mod m20261201_150000_patients_sex_gender_sealed;
mod m20261202_120000_messages;
mod m20261202_130000_billing;
mod m20261202_140000_appointments_updated_at;
mod m20261202_150000_ledger_reasons;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_120000_core::Migration),
            Box::new(m20261124_120100_audit_append_only::Migration),
            Box::new(m20261124_130000_patient_email_not_unique::Migration),
            Box::new(m20261201_120000_medical_records::Migration),
            Box::new(m20261201_130000_appointments::Migration),
            Box::new(m20261201_140000_shares_and_corrections::Migration),
            Box::new(m20261201_150000_patients_sex_gender_sealed::Migration),
            Box::new(m20261202_120000_messages::Migration),
            Box::new(m20261202_130000_billing::Migration),
            Box::new(m20261202_140000_appointments_updated_at::Migration),
            Box::new(m20261202_150000_ledger_reasons::Migration),
        ]
    }
}
