//! Sex at birth and gender identity become ciphertext like the rest of the demographics:
//! two sealed columns. The application re-seals existing rows at start-up (sealing needs
//! the data keys, which migrations do not hold) and empties the old plaintext columns,
//! which a later migration drops once every instance writes the sealed ones.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Patients {
    Table,
    SexAtBirthEnc,
    GenderIdentityEnc,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        m.alter_table(
            Table::alter()
                .table(Patients::Table)
                .add_column(binary_null(Patients::SexAtBirthEnc))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Patients::Table)
                .add_column(binary_null(Patients::GenderIdentityEnc))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Patients::Table)
                .drop_column(Patients::GenderIdentityEnc)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Patients::Table)
                .drop_column(Patients::SexAtBirthEnc)
                .to_owned(),
        )
        .await
    }
}
