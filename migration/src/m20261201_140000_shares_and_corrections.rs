//! Record shares (a patient gives one provider outside the care team read access to one
//! record until it expires or is revoked) and correction requests (the right to amend,
//! 45 CFR 164.526: the request, its answer, and the patient's statement of disagreement).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MedicalRecords {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Providers {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum RecordShares {
    Table,
    Id,
    RecordId,
    PatientId,
    ProviderId,
    ExpiresAt,
    CreatedBy,
    CreatedAt,
    RevokedAt,
    RevokedBy,
}

#[derive(DeriveIden)]
enum CorrectionRequests {
    Table,
    Id,
    RecordId,
    PatientId,
    RequestedBy,
    RequestedAt,
    TextEnc,
    Status,
    RespondedBy,
    RespondedAt,
    ResponseEnc,
    AmendedVersion,
    DisagreementEnc,
    DisagreedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RecordShares::Table)
                .col(uuid(RecordShares::Id).primary_key())
                .col(uuid(RecordShares::RecordId))
                .col(uuid(RecordShares::PatientId))
                .col(uuid(RecordShares::ProviderId))
                .col(timestamp_with_time_zone(RecordShares::ExpiresAt))
                .col(uuid(RecordShares::CreatedBy))
                .col(timestamp_with_time_zone(RecordShares::CreatedAt))
                .col(timestamp_with_time_zone_null(RecordShares::RevokedAt))
                .col(uuid_null(RecordShares::RevokedBy))
                .foreign_key(
                    ForeignKey::create()
                        .from(RecordShares::Table, RecordShares::RecordId)
                        .to(MedicalRecords::Table, MedicalRecords::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(RecordShares::Table, RecordShares::ProviderId)
                        .to(Providers::Table, Providers::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_record_shares_provider")
                .table(RecordShares::Table)
                .col(RecordShares::ProviderId)
                .col(RecordShares::ExpiresAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_record_shares_record")
                .table(RecordShares::Table)
                .col(RecordShares::RecordId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(CorrectionRequests::Table)
                .col(uuid(CorrectionRequests::Id).primary_key())
                .col(uuid(CorrectionRequests::RecordId))
                .col(uuid(CorrectionRequests::PatientId))
                .col(uuid(CorrectionRequests::RequestedBy))
                .col(timestamp_with_time_zone(CorrectionRequests::RequestedAt))
                .col(binary(CorrectionRequests::TextEnc))
                .col(string(CorrectionRequests::Status))
                .col(uuid_null(CorrectionRequests::RespondedBy))
                .col(timestamp_with_time_zone_null(
                    CorrectionRequests::RespondedAt,
                ))
                .col(binary_null(CorrectionRequests::ResponseEnc))
                .col(integer_null(CorrectionRequests::AmendedVersion))
                .col(binary_null(CorrectionRequests::DisagreementEnc))
                .col(timestamp_with_time_zone_null(
                    CorrectionRequests::DisagreedAt,
                ))
                .foreign_key(
                    ForeignKey::create()
                        .from(CorrectionRequests::Table, CorrectionRequests::RecordId)
                        .to(MedicalRecords::Table, MedicalRecords::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_correction_requests_record")
                .table(CorrectionRequests::Table)
                .col(CorrectionRequests::RecordId)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_correction_requests_patient")
                .table(CorrectionRequests::Table)
                .col(CorrectionRequests::PatientId)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(CorrectionRequests::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(RecordShares::Table).to_owned())
            .await
    }
}
