//! Patient e-mail addresses are not unique (family members share one), and a unique index
//! on them let any caller learn, through CONFLICT, that an address belongs to some patient.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Patients {
    Table,
    EmailBidx,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ux_patients_email_bidx")
                .table(Patients::Table)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_patients_email_bidx")
                .table(Patients::Table)
                .col(Patients::EmailBidx)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ix_patients_email_bidx")
                .table(Patients::Table)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_patients_email_bidx")
                .table(Patients::Table)
                .col(Patients::EmailBidx)
                .unique()
                .to_owned(),
        )
        .await
    }
}
