//! The database refuses UPDATE and DELETE on audit rows. On PostgreSQL this is a real
//! barrier for the application role; on SQLite anyone holding the file can drop the trigger,
//! so there the hash chain and `caregraph audit verify` are what detect tampering.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if m.get_database_backend() == DbBackend::Sqlite {
            for op in ["UPDATE", "DELETE"] {
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER audit_log_no_{} BEFORE {op} ON audit_log \
                     BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
                    op.to_lowercase()
                ))
                .await?;
            }
            return Ok(());
        }
        db.execute_unprepared(
            r#"CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql"#,
        )
        .await?;
        db.execute_unprepared(
            "CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log \
             FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if m.get_database_backend() == DbBackend::Sqlite {
            db.execute_unprepared("DROP TRIGGER IF EXISTS audit_log_no_update")
                .await?;
            db.execute_unprepared("DROP TRIGGER IF EXISTS audit_log_no_delete")
                .await?;
            return Ok(());
        }
        db.execute_unprepared("DROP TRIGGER IF EXISTS audit_log_no_update_delete ON audit_log")
            .await?;
        db.execute_unprepared("DROP FUNCTION IF EXISTS audit_log_append_only()")
            .await?;
        Ok(())
    }
}
