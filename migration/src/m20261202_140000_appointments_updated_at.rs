//! Appointments by the time they last changed: what a live `appointmentChanged` feed
//! replays after its instance lost the bus (Redis pub/sub drops what is published while an
//! instance is away) reads a short window of this index, not the whole table.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Appointments {
    Table,
    UpdatedAt,
}

const INDEX: &str = "ix_appointments_updated_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name(INDEX)
                .table(Appointments::Table)
                .col(Appointments::UpdatedAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name(INDEX)
                .table(Appointments::Table)
                .to_owned(),
        )
        .await
    }
}
