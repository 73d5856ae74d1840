//! Billing: statements (immutable snapshots; line items sealed), the append-only ledger
//! their balances are summed from, payment attempts (idempotency key unique per payer,
//! written before the gateway is called), insurance coverages, and the sandbox gateway's
//! own records.
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
enum BillingStatements {
    Table,
    Id,
    PatientId,
    IssuedOn,
    DueOn,
    Currency,
    TotalCents,
    LinesEnc,
    Status,
    VoidReasonEnc,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    Id,
    StatementId,
    PatientId,
    Kind,
    AmountCents,
    PaymentId,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Id,
    StatementId,
    PatientId,
    ActorId,
    KeyBidx,
    FingerprintBidx,
    AmountCents,
    Status,
    TokenEnc,
    GatewayRef,
    RefundedCents,
    CreatedAt,
    SettledAt,
}

#[derive(DeriveIden)]
enum Coverages {
    Table,
    Id,
    PatientId,
    Payer,
    PlanName,
    MemberIdEnc,
    GroupNumberEnc,
    Relationship,
    EffectiveFrom,
    EffectiveTo,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SandboxCharges {
    Table,
    Key,
    AmountCents,
    Outcome,
    Reference,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(BillingStatements::Table)
                .col(uuid(BillingStatements::Id).primary_key())
                .col(uuid(BillingStatements::PatientId))
                .col(date(BillingStatements::IssuedOn))
                .col(date(BillingStatements::DueOn))
                .col(string(BillingStatements::Currency))
                .col(big_integer(BillingStatements::TotalCents))
                .col(binary(BillingStatements::LinesEnc))
                .col(string(BillingStatements::Status))
                .col(binary_null(BillingStatements::VoidReasonEnc))
                .col(uuid(BillingStatements::CreatedBy))
                .col(timestamp_with_time_zone(BillingStatements::CreatedAt))
                .check(Expr::col(BillingStatements::Status).is_in(["OPEN", "PAID", "VOID"]))
                .check(Expr::col(BillingStatements::TotalCents).gt(0))
                .foreign_key(
                    ForeignKey::create()
                        .from(BillingStatements::Table, BillingStatements::PatientId)
                        .to(Patients::Table, Patients::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_billing_statements_patient_issued")
                .table(BillingStatements::Table)
                .col(BillingStatements::PatientId)
                .col(BillingStatements::IssuedOn)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Payments::Table)
                .col(uuid(Payments::Id).primary_key())
                .col(uuid(Payments::StatementId))
                .col(uuid(Payments::PatientId))
                .col(uuid(Payments::ActorId))
                .col(binary(Payments::KeyBidx))
                .col(binary(Payments::FingerprintBidx))
                .col(big_integer(Payments::AmountCents))
                .col(string(Payments::Status))
                .col(binary(Payments::TokenEnc))
                .col(string_null(Payments::GatewayRef))
                .col(big_integer(Payments::RefundedCents).default(0))
                .col(timestamp_with_time_zone(Payments::CreatedAt))
                .col(timestamp_with_time_zone_null(Payments::SettledAt))
                .check(Expr::col(Payments::AmountCents).gt(0))
                .check(Expr::col(Payments::Status).is_in([
                    "PENDING",
                    "SUCCEEDED",
                    "DECLINED",
                    "REFUNDED",
                ]))
                .foreign_key(
                    ForeignKey::create()
                        .from(Payments::Table, Payments::StatementId)
                        .to(BillingStatements::Table, BillingStatements::Id),
                )
                .to_owned(),
        )
        .await?;
        // One attempt per payer and key: the database refuses a second.
        m.create_index(
            Index::create()
                .name("ux_payments_actor_key")
                .table(Payments::Table)
                .col(Payments::ActorId)
                .col(Payments::KeyBidx)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_payments_statement")
                .table(Payments::Table)
                .col(Payments::StatementId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(LedgerEntries::Table)
                .col(uuid(LedgerEntries::Id).primary_key())
                .col(uuid(LedgerEntries::StatementId))
                .col(uuid(LedgerEntries::PatientId))
                .col(string(LedgerEntries::Kind))
                .col(big_integer(LedgerEntries::AmountCents))
                .col(uuid_null(LedgerEntries::PaymentId))
                .col(uuid(LedgerEntries::CreatedBy))
                .col(timestamp_with_time_zone(LedgerEntries::CreatedAt))
                .check(Expr::col(LedgerEntries::Kind).is_in([
                    "CHARGE",
                    "PAYMENT",
                    "REFUND",
                    "ADJUSTMENT",
                ]))
                .foreign_key(
                    ForeignKey::create()
                        .from(LedgerEntries::Table, LedgerEntries::StatementId)
                        .to(BillingStatements::Table, BillingStatements::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_ledger_entries_statement")
                .table(LedgerEntries::Table)
                .col(LedgerEntries::StatementId)
                .to_owned(),
        )
        .await?;
        // A payment's entries (its settlement, its refunds).
        m.create_index(
            Index::create()
                .name("ix_ledger_entries_payment")
                .table(LedgerEntries::Table)
                .col(LedgerEntries::PaymentId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Coverages::Table)
                .col(uuid(Coverages::Id).primary_key())
                .col(uuid(Coverages::PatientId))
                .col(string(Coverages::Payer))
                .col(string(Coverages::PlanName))
                .col(binary(Coverages::MemberIdEnc))
                .col(binary_null(Coverages::GroupNumberEnc))
                .col(string(Coverages::Relationship))
                .col(date(Coverages::EffectiveFrom))
                .col(date_null(Coverages::EffectiveTo))
                .col(uuid(Coverages::CreatedBy))
                .col(timestamp_with_time_zone(Coverages::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Coverages::Table, Coverages::PatientId)
                        .to(Patients::Table, Patients::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_coverages_patient")
                .table(Coverages::Table)
                .col(Coverages::PatientId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(SandboxCharges::Table)
                .col(string(SandboxCharges::Key).primary_key())
                .col(big_integer(SandboxCharges::AmountCents))
                .col(string(SandboxCharges::Outcome))
                .col(string(SandboxCharges::Reference))
                .col(timestamp_with_time_zone(SandboxCharges::CreatedAt))
                .to_owned(),
        )
        .await?;

        // The ledger is append-only, like the audit log.
        let db = m.get_connection();
        match m.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(
                    "CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'ledger_entries is append-only'; END $$",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER ledger_entries_no_update_delete BEFORE UPDATE OR DELETE \
                     ON ledger_entries FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()",
                )
                .await?;
            }
            _ => {
                for op in ["UPDATE", "DELETE"] {
                    db.execute_unprepared(&format!(
                        "CREATE TRIGGER ledger_entries_no_{} BEFORE {op} ON ledger_entries \
                         BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END",
                        op.to_lowercase()
                    ))
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == DbBackend::Postgres {
            m.get_connection()
                .execute_unprepared("DROP FUNCTION IF EXISTS ledger_entries_append_only CASCADE")
                .await?;
        }
        for t in [
            SandboxCharges::Table.into_iden(),
            Coverages::Table.into_iden(),
            LedgerEntries::Table.into_iden(),
            Payments::Table.into_iden(),
            BillingStatements::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
