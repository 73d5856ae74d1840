//! Core tables: users, providers, patients, care team, consent, allergies, emergency access,
//! idempotency keys and the hash-chained audit log. Columns ending in `_enc` hold only
//! AES-256-GCM-SIV ciphertext; `_bidx` columns hold keyed blind indexes (HMAC).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Providers::Table)
                .col(uuid(Providers::Id).primary_key())
                .col(string(Providers::DisplayName))
                .col(timestamp_with_time_zone(Providers::CreatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Patients::Table)
                .col(uuid(Patients::Id).primary_key())
                .col(binary(Patients::MrnEnc))
                .col(binary(Patients::MrnBidx))
                .col(binary(Patients::GivenNameEnc))
                .col(binary_null(Patients::MiddleNameEnc))
                .col(binary(Patients::FamilyNameEnc))
                .col(binary(Patients::FamilyNameBidx))
                .col(binary(Patients::BirthDateEnc))
                .col(binary(Patients::BirthDateBidx))
                .col(string(Patients::SexAtBirth))
                .col(string(Patients::GenderIdentity))
                .col(binary_null(Patients::GenderIdentityOtherEnc))
                .col(binary_null(Patients::EmailEnc))
                .col(binary_null(Patients::EmailBidx))
                .col(binary_null(Patients::PhoneEnc))
                .col(binary_null(Patients::PhoneBidx))
                .col(binary_null(Patients::AddressEnc))
                .col(binary_null(Patients::EmergencyContactEnc))
                .col(binary_null(Patients::SsnEnc))
                .col(binary_null(Patients::SsnLast4Enc))
                .col(string_null(Patients::PreferredLanguage))
                .col(boolean(Patients::ConsentToContact))
                .col(integer(Patients::Version))
                .col(uuid_null(Patients::CreatedBy))
                .col(timestamp_with_time_zone(Patients::CreatedAt))
                .col(timestamp_with_time_zone(Patients::UpdatedAt))
                .col(timestamp_with_time_zone_null(Patients::ArchivedAt))
                .col(binary_null(Patients::ArchiveReasonEnc))
                .to_owned(),
        )
        .await?;
        for (name, col, unique) in [
            ("ux_patients_mrn_bidx", Patients::MrnBidx, true),
            ("ux_patients_email_bidx", Patients::EmailBidx, true),
            (
                "ix_patients_family_name_bidx",
                Patients::FamilyNameBidx,
                false,
            ),
            (
                "ix_patients_birth_date_bidx",
                Patients::BirthDateBidx,
                false,
            ),
            ("ix_patients_phone_bidx", Patients::PhoneBidx, false),
        ] {
            let mut idx = Index::create();
            idx.name(name).table(Patients::Table).col(col);
            if unique {
                idx.unique();
            }
            m.create_index(idx.to_owned()).await?;
        }

        m.create_table(
            Table::create()
                .table(Users::Table)
                .col(uuid(Users::Id).primary_key())
                .col(binary(Users::EmailBidx).unique_key())
                .col(binary(Users::EmailEnc))
                .col(string(Users::PasswordHash))
                .col(string(Users::Role))
                .col(uuid_null(Users::PatientId))
                .col(uuid_null(Users::ProviderId))
                .col(boolean(Users::MfaEnrolled))
                .col(binary_null(Users::MfaSecretEnc))
                .col(binary_null(Users::MfaPendingEnc))
                .col(timestamp_with_time_zone(Users::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Users::Table, Users::PatientId)
                        .to(Patients::Table, Patients::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Users::Table, Users::ProviderId)
                        .to(Providers::Table, Providers::Id),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(CareTeam::Table)
                .col(uuid(CareTeam::PatientId))
                .col(uuid(CareTeam::ProviderId))
                .col(uuid_null(CareTeam::AssignedBy))
                .col(timestamp_with_time_zone(CareTeam::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(CareTeam::PatientId)
                        .col(CareTeam::ProviderId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(CareTeam::Table, CareTeam::PatientId)
                        .to(Patients::Table, Patients::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(CareTeam::Table, CareTeam::ProviderId)
                        .to(Providers::Table, Providers::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_care_team_provider")
                .table(CareTeam::Table)
                .col(CareTeam::ProviderId)
                .col(CareTeam::PatientId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Consents::Table)
                .col(uuid(Consents::Id).primary_key())
                .col(uuid(Consents::PatientId))
                .col(uuid(Consents::GranteeProviderId))
                .col(string(Consents::Scopes))
                .col(string(Consents::Status))
                .col(uuid(Consents::GrantedBy))
                .col(timestamp_with_time_zone(Consents::GrantedAt))
                .col(timestamp_with_time_zone_null(Consents::ExpiresAt))
                .col(timestamp_with_time_zone_null(Consents::WithdrawnAt))
                .col(uuid_null(Consents::WithdrawnBy))
                .foreign_key(
                    ForeignKey::create()
                        .from(Consents::Table, Consents::PatientId)
                        .to(Patients::Table, Patients::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Consents::Table, Consents::GranteeProviderId)
                        .to(Providers::Table, Providers::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_consents_patient_grantee")
                .table(Consents::Table)
                .col(Consents::PatientId)
                .col(Consents::GranteeProviderId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Allergies::Table)
                .col(uuid(Allergies::Id).primary_key())
                .col(uuid(Allergies::PatientId))
                .col(binary(Allergies::SubstanceEnc))
                .col(binary_null(Allergies::ReactionEnc))
                .col(string(Allergies::Severity))
                .col(string(Allergies::Status))
                .col(uuid(Allergies::RecordedBy))
                .col(timestamp_with_time_zone(Allergies::RecordedAt))
                .col(uuid_null(Allergies::ResolvedBy))
                .col(timestamp_with_time_zone_null(Allergies::ResolvedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Allergies::Table, Allergies::PatientId)
                        .to(Patients::Table, Patients::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_allergies_patient")
                .table(Allergies::Table)
                .col(Allergies::PatientId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(EmergencyAccess::Table)
                .col(uuid(EmergencyAccess::Id).primary_key())
                .col(uuid(EmergencyAccess::PatientId))
                .col(uuid(EmergencyAccess::ProviderId))
                .col(binary(EmergencyAccess::ReasonEnc))
                .col(timestamp_with_time_zone(EmergencyAccess::OpenedAt))
                .col(timestamp_with_time_zone(EmergencyAccess::ExpiresAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(EmergencyAccess::Table, EmergencyAccess::PatientId)
                        .to(Patients::Table, Patients::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_emergency_access_provider_patient")
                .table(EmergencyAccess::Table)
                .col(EmergencyAccess::ProviderId)
                .col(EmergencyAccess::PatientId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(IdempotencyKeys::Table)
                .col(uuid(IdempotencyKeys::ActorId))
                .col(string(IdempotencyKeys::Key))
                .col(string(IdempotencyKeys::Operation))
                .col(binary(IdempotencyKeys::RequestHash))
                .col(uuid(IdempotencyKeys::ResourceId))
                .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(IdempotencyKeys::ActorId)
                        .col(IdempotencyKeys::Key),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(AuditLog::Table)
                .col(big_integer(AuditLog::Seq).primary_key())
                .col(uuid(AuditLog::Id))
                .col(timestamp_with_time_zone(AuditLog::OccurredAt))
                .col(uuid_null(AuditLog::ActorId))
                .col(string_null(AuditLog::ActorRole))
                .col(string(AuditLog::Action))
                .col(string(AuditLog::ResourceType))
                .col(string_null(AuditLog::ResourceId))
                .col(uuid_null(AuditLog::PatientId))
                .col(string(AuditLog::Outcome))
                .col(text(AuditLog::Detail))
                .col(boolean(AuditLog::BreakGlass))
                .col(string_null(AuditLog::Ip))
                .col(string_null(AuditLog::UserAgent))
                .col(string_null(AuditLog::RequestId))
                .col(binary(AuditLog::PrevHash))
                .col(binary(AuditLog::Hash))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_audit_log_patient")
                .table(AuditLog::Table)
                .col(AuditLog::PatientId)
                .col(AuditLog::Seq)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(AuditHead::Table)
                .col(integer(AuditHead::Id).primary_key())
                .col(big_integer(AuditHead::Seq))
                .col(binary(AuditHead::Hash))
                .to_owned(),
        )
        .await?;
        // The chain starts from a single head row: seq 0 and an all-zero hash.
        m.exec_stmt(
            Query::insert()
                .into_table(AuditHead::Table)
                .columns([AuditHead::Id, AuditHead::Seq, AuditHead::Hash])
                .values_panic([1.into(), 0i64.into(), vec![0u8; 32].into()])
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            AuditHead::Table.into_iden(),
            AuditLog::Table.into_iden(),
            IdempotencyKeys::Table.into_iden(),
            EmergencyAccess::Table.into_iden(),
            Allergies::Table.into_iden(),
            Consents::Table.into_iden(),
            CareTeam::Table.into_iden(),
            Users::Table.into_iden(),
            Patients::Table.into_iden(),
            Providers::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Providers {
    Table,
    Id,
    DisplayName,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Patients {
    Table,
    Id,
    MrnEnc,
    MrnBidx,
    GivenNameEnc,
    MiddleNameEnc,
    FamilyNameEnc,
    FamilyNameBidx,
    BirthDateEnc,
    BirthDateBidx,
    SexAtBirth,
    GenderIdentity,
    GenderIdentityOtherEnc,
    EmailEnc,
    EmailBidx,
    PhoneEnc,
    PhoneBidx,
    AddressEnc,
    EmergencyContactEnc,
    SsnEnc,
    SsnLast4Enc,
    PreferredLanguage,
    ConsentToContact,
    Version,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    ArchivedAt,
    ArchiveReasonEnc,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    EmailBidx,
    EmailEnc,
    PasswordHash,
    Role,
    PatientId,
    ProviderId,
    MfaEnrolled,
    MfaSecretEnc,
    MfaPendingEnc,
    CreatedAt,
}

#[derive(DeriveIden)]
enum CareTeam {
    Table,
    PatientId,
    ProviderId,
    AssignedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Consents {
    Table,
    Id,
    PatientId,
    GranteeProviderId,
    Scopes,
    Status,
    GrantedBy,
    GrantedAt,
    ExpiresAt,
    WithdrawnAt,
    WithdrawnBy,
}

#[derive(DeriveIden)]
enum Allergies {
    Table,
    Id,
    PatientId,
    SubstanceEnc,
    ReactionEnc,
    Severity,
    Status,
    RecordedBy,
    RecordedAt,
    ResolvedBy,
    ResolvedAt,
}

#[derive(DeriveIden)]
enum EmergencyAccess {
    Table,
    Id,
    PatientId,
    ProviderId,
    ReasonEnc,
    OpenedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    ActorId,
    Key,
    Operation,
    RequestHash,
    ResourceId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Seq,
    Id,
    OccurredAt,
    ActorId,
    ActorRole,
    Action,
    ResourceType,
    ResourceId,
    PatientId,
    Outcome,
    Detail,
    BreakGlass,
    Ip,
    UserAgent,
    RequestId,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditHead {
    Table,
    Id,
    Seq,
    Hash,
}
