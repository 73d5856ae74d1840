//! Providers' schedules and appointments. `providers` gains a specialty, an IANA time zone and
//! a recurring week (slot length and weekly hours as JSON, read in that zone);
//! `provider_time_off` holds absences; `appointments` the bookings, with their reason, notes
//! and cancellation reason sealed. On PostgreSQL an exclusion constraint refuses two
//! non-cancelled appointments of one provider that overlap; SQLite has no such constraint,
//! and the application checks inside the write transaction that books.
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
enum Providers {
    Table,
    Id,
    Specialty,
    TimeZone,
    SlotMinutes,
    WeeklyHours,
}

#[derive(DeriveIden)]
enum ProviderTimeOff {
    Table,
    Id,
    ProviderId,
    StartsAt,
    EndsAt,
    Reason,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Appointments {
    Table,
    Id,
    PatientId,
    ProviderId,
    StartsAt,
    EndsAt,
    DurationMinutes,
    Status,
    ReasonEnc,
    NotesEnc,
    CancelReasonEnc,
    Version,
    CreatedBy,
    CreatedAt,
    UpdatedBy,
    UpdatedAt,
}

/// The name the exclusion constraint's violations carry.
const NO_OVERLAP: &str = "appointments_no_overlap";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for col in [
            string_null(Providers::Specialty),
            string_null(Providers::TimeZone),
            integer_null(Providers::SlotMinutes),
            text_null(Providers::WeeklyHours),
        ] {
            m.alter_table(
                Table::alter()
                    .table(Providers::Table)
                    .add_column(col)
                    .to_owned(),
            )
            .await?;
        }

        m.create_table(
            Table::create()
                .table(ProviderTimeOff::Table)
                .col(uuid(ProviderTimeOff::Id).primary_key())
                .col(uuid(ProviderTimeOff::ProviderId))
                .col(timestamp_with_time_zone(ProviderTimeOff::StartsAt))
                .col(timestamp_with_time_zone(ProviderTimeOff::EndsAt))
                .col(string(ProviderTimeOff::Reason))
                .col(uuid(ProviderTimeOff::CreatedBy))
                .col(timestamp_with_time_zone(ProviderTimeOff::CreatedAt))
                .check(Expr::col(ProviderTimeOff::EndsAt).gt(Expr::col(ProviderTimeOff::StartsAt)))
                .foreign_key(
                    ForeignKey::create()
                        .from(ProviderTimeOff::Table, ProviderTimeOff::ProviderId)
                        .to(Providers::Table, Providers::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_provider_time_off_provider_start")
                .table(ProviderTimeOff::Table)
                .col(ProviderTimeOff::ProviderId)
                .col(ProviderTimeOff::StartsAt)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Appointments::Table)
                .col(uuid(Appointments::Id).primary_key())
                .col(uuid(Appointments::PatientId))
                .col(uuid(Appointments::ProviderId))
                .col(timestamp_with_time_zone(Appointments::StartsAt))
                .col(timestamp_with_time_zone(Appointments::EndsAt))
                .col(integer(Appointments::DurationMinutes))
                .col(string(Appointments::Status))
                .col(binary(Appointments::ReasonEnc))
                .col(binary_null(Appointments::NotesEnc))
                .col(binary_null(Appointments::CancelReasonEnc))
                .col(integer(Appointments::Version))
                .col(uuid(Appointments::CreatedBy))
                .col(timestamp_with_time_zone(Appointments::CreatedAt))
                .col(uuid(Appointments::UpdatedBy))
                .col(timestamp_with_time_zone(Appointments::UpdatedAt))
                .check(Expr::col(Appointments::EndsAt).gt(Expr::col(Appointments::StartsAt)))
                .check(Expr::col(Appointments::Status).is_in([
                    "SCHEDULED",
                    "COMPLETED",
                    "CANCELLED",
                    "NO_SHOW",
                ]))
                .foreign_key(
                    ForeignKey::create()
                        .from(Appointments::Table, Appointments::PatientId)
                        .to(Patients::Table, Patients::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Appointments::Table, Appointments::ProviderId)
                        .to(Providers::Table, Providers::Id),
                )
                .to_owned(),
        )
        .await?;
        // A provider's calendar and free/busy: by provider, in time order.
        m.create_index(
            Index::create()
                .name("ix_appointments_provider_start")
                .table(Appointments::Table)
                .col(Appointments::ProviderId)
                .col(Appointments::StartsAt)
                .to_owned(),
        )
        .await?;
        // A patient's appointments, soonest first (the id breaks ties for cursors).
        m.create_index(
            Index::create()
                .name("ix_appointments_patient_start")
                .table(Appointments::Table)
                .col(Appointments::PatientId)
                .col(Appointments::StartsAt)
                .col(Appointments::Id)
                .to_owned(),
        )
        .await?;

        if m.get_database_backend() == DbBackend::Postgres {
            let db = m.get_connection();
            db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS btree_gist")
                .await?;
            db.execute_unprepared(&format!(
                "ALTER TABLE appointments ADD CONSTRAINT {NO_OVERLAP} EXCLUDE USING gist \
                 (provider_id WITH =, tstzrange(starts_at, ends_at, '[)') WITH &&) \
                 WHERE (status <> 'CANCELLED')"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Appointments::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(ProviderTimeOff::Table).to_owned())
            .await?;
        for col in [
            Providers::WeeklyHours,
            Providers::SlotMinutes,
            Providers::TimeZone,
            Providers::Specialty,
        ] {
            m.alter_table(
                Table::alter()
                    .table(Providers::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
