//! Why a ledger entry was made, when someone said so (a refund's reason), sealed like
//! every other free text about a patient.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    ReasonEnc,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(LedgerEntries::Table)
                .add_column(binary_null(LedgerEntries::ReasonEnc))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(LedgerEntries::Table)
                .drop_column(LedgerEntries::ReasonEnc)
                .to_owned(),
        )
        .await
    }
}
