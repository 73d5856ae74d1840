//! Medical records of every kind in one family: `medical_records` (the current version),
//! `medical_record_versions` (every prior version, insert-only) and `record_blobs` (document
//! bodies, apart so lists never load them). The `allergies` table's rows are moved into the
//! family by the application at start-up (re-sealing needs the data keys, which migrations
//! do not hold); the table stays, empty, until a later migration drops it.
use sea_orm_migration::sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Patients {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum MedicalRecords {
    Table,
    Id,
    PatientId,
    Kind,
    Status,
    RecordStatus,
    Sensitivity,
    Version,
    OccurredAt,
    RecordedAt,
    RecordedBy,
    ProviderId,
    CodeBidx,
    ContentEnc,
    UpdatedAt,
    UpdatedBy,
}

#[derive(DeriveIden)]
enum MedicalRecordVersions {
    Table,
    Id,
    RecordId,
    PatientId,
    Version,
    Status,
    RecordStatus,
    Sensitivity,
    OccurredAt,
    ContentEnc,
    MadeBy,
    MadeAt,
    Change,
    ChangedBy,
    ChangedAt,
    ReasonEnc,
}

#[derive(DeriveIden)]
enum RecordBlobs {
    Table,
    Id,
    RecordId,
    PatientId,
    ContentEnc,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(MedicalRecords::Table)
                .col(uuid(MedicalRecords::Id).primary_key())
                .col(uuid(MedicalRecords::PatientId))
                .col(string(MedicalRecords::Kind))
                .col(string_null(MedicalRecords::Status))
                .col(string(MedicalRecords::RecordStatus))
                .col(string(MedicalRecords::Sensitivity))
                .col(integer(MedicalRecords::Version))
                .col(timestamp_with_time_zone(MedicalRecords::OccurredAt))
                .col(timestamp_with_time_zone(MedicalRecords::RecordedAt))
                .col(uuid(MedicalRecords::RecordedBy))
                .col(uuid_null(MedicalRecords::ProviderId))
                .col(binary_null(MedicalRecords::CodeBidx))
                .col(binary(MedicalRecords::ContentEnc))
                .col(timestamp_with_time_zone(MedicalRecords::UpdatedAt))
                .col(uuid(MedicalRecords::UpdatedBy))
                .foreign_key(
                    ForeignKey::create()
                        .from(MedicalRecords::Table, MedicalRecords::PatientId)
                        .to(Patients::Table, Patients::Id),
                )
                .to_owned(),
        )
        .await?;
        // Lists: a patient's records newest first, by kind or across kinds.
        m.create_index(
            Index::create()
                .name("ix_medical_records_patient_time")
                .table(MedicalRecords::Table)
                .col(MedicalRecords::PatientId)
                .col(MedicalRecords::OccurredAt)
                .col(MedicalRecords::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_medical_records_patient_kind_time")
                .table(MedicalRecords::Table)
                .col(MedicalRecords::PatientId)
                .col(MedicalRecords::Kind)
                .col(MedicalRecords::OccurredAt)
                .col(MedicalRecords::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_medical_records_code")
                .table(MedicalRecords::Table)
                .col(MedicalRecords::CodeBidx)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(MedicalRecordVersions::Table)
                .col(uuid(MedicalRecordVersions::Id).primary_key())
                .col(uuid(MedicalRecordVersions::RecordId))
                .col(uuid(MedicalRecordVersions::PatientId))
                .col(integer(MedicalRecordVersions::Version))
                .col(string_null(MedicalRecordVersions::Status))
                .col(string(MedicalRecordVersions::RecordStatus))
                .col(string(MedicalRecordVersions::Sensitivity))
                .col(timestamp_with_time_zone(MedicalRecordVersions::OccurredAt))
                .col(binary(MedicalRecordVersions::ContentEnc))
                .col(uuid(MedicalRecordVersions::MadeBy))
                .col(timestamp_with_time_zone(MedicalRecordVersions::MadeAt))
                .col(string(MedicalRecordVersions::Change))
                .col(uuid(MedicalRecordVersions::ChangedBy))
                .col(timestamp_with_time_zone(MedicalRecordVersions::ChangedAt))
                .col(binary_null(MedicalRecordVersions::ReasonEnc))
                .foreign_key(
                    ForeignKey::create()
                        .from(
                            MedicalRecordVersions::Table,
                            MedicalRecordVersions::RecordId,
                        )
                        .to(MedicalRecords::Table, MedicalRecords::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_medical_record_versions_record_version")
                .table(MedicalRecordVersions::Table)
                .col(MedicalRecordVersions::RecordId)
                .col(MedicalRecordVersions::Version)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(RecordBlobs::Table)
                .col(uuid(RecordBlobs::Id).primary_key())
                .col(uuid(RecordBlobs::RecordId))
                .col(uuid(RecordBlobs::PatientId))
                .col(binary(RecordBlobs::ContentEnc))
                .col(timestamp_with_time_zone(RecordBlobs::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(RecordBlobs::Table, RecordBlobs::PatientId)
                        .to(Patients::Table, Patients::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_record_blobs_record")
                .table(RecordBlobs::Table)
                .col(RecordBlobs::RecordId)
                .to_owned(),
        )
        .await?;
        refuse(
            m,
            "medical_records",
            "DELETE",
            "medical records are never deleted; mark them entered in error",
        )
        .await?;
        refuse(
            m,
            "medical_record_versions",
            "UPDATE",
            "record versions are insert-only",
        )
        .await?;
        refuse(
            m,
            "medical_record_versions",
            "DELETE",
            "record versions are insert-only",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for (table, op) in [
            ("medical_records", "DELETE"),
            ("medical_record_versions", "UPDATE"),
            ("medical_record_versions", "DELETE"),
        ] {
            let name = trigger_name(table, op);
            let sql = match m.get_database_backend() {
                DbBackend::Sqlite => format!("DROP TRIGGER IF EXISTS {name}"),
                _ => format!("DROP TRIGGER IF EXISTS {name} ON {table}"),
            };
            db.execute_unprepared(&sql).await?;
        }
        if m.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared("DROP FUNCTION IF EXISTS caregraph_refuse()")
                .await?;
        }
        m.drop_table(Table::drop().table(RecordBlobs::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(MedicalRecordVersions::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(MedicalRecords::Table).to_owned())
            .await
    }
}

fn trigger_name(table: &str, op: &str) -> String {
    format!("{table}_no_{}", op.to_lowercase())
}

/// A trigger that refuses `op` on `table`, on either backend (a real barrier for the
/// application role on PostgreSQL; on SQLite, whoever holds the file can drop it).
async fn refuse(m: &SchemaManager<'_>, table: &str, op: &str, why: &str) -> Result<(), DbErr> {
    let db = m.get_connection();
    let name = trigger_name(table, op);
    if m.get_database_backend() == DbBackend::Sqlite {
        return db
            .execute_unprepared(&format!(
                "CREATE TRIGGER {name} BEFORE {op} ON {table} \
                 BEGIN SELECT RAISE(ABORT, '{why}'); END"
            ))
            .await
            .map(|_| ());
    }
    db.execute_unprepared(
        r#"CREATE OR REPLACE FUNCTION caregraph_refuse() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION '%', TG_ARGV[0];
END;
$$ LANGUAGE plpgsql"#,
    )
    .await?;
    db.execute_unprepared(&format!(
        "CREATE TRIGGER {name} BEFORE {op} ON {table} \
         FOR EACH ROW EXECUTE FUNCTION caregraph_refuse('{why}')"
    ))
    .await
    .map(|_| ())
}
