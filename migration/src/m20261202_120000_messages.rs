//! Secure messaging: threads about one patient, their participants (with read state and
//! archive flag), the messages (body sealed; `seq` unique, in commit order, the cursor
//! subscribers replay by) and their attachments (references to clinical documents).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Patients {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum MedicalRecords {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum MessageThreads {
    Table,
    Id,
    PatientId,
    SubjectEnc,
    CreatedBy,
    CreatedAt,
    LastMessageAt,
}

#[derive(DeriveIden)]
enum ThreadParticipants {
    Table,
    ThreadId,
    UserId,
    Role,
    JoinedAt,
    LastReadSeq,
    ArchivedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    Seq,
    ThreadId,
    PatientId,
    SenderId,
    SenderRole,
    BodyEnc,
    SentAt,
    RetractedAt,
}

#[derive(DeriveIden)]
enum MessageAttachments {
    Table,
    MessageId,
    RecordId,
    Position,
}

const ROLES: [&str; 3] = ["PATIENT", "PROVIDER", "ADMIN"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(MessageThreads::Table)
                .col(uuid(MessageThreads::Id).primary_key())
                .col(uuid(MessageThreads::PatientId))
                .col(binary(MessageThreads::SubjectEnc))
                .col(uuid(MessageThreads::CreatedBy))
                .col(timestamp_with_time_zone(MessageThreads::CreatedAt))
                .col(timestamp_with_time_zone(MessageThreads::LastMessageAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(MessageThreads::Table, MessageThreads::PatientId)
                        .to(Patients::Table, Patients::Id),
                )
                .to_owned(),
        )
        .await?;
        // A patient's threads, latest activity first.
        m.create_index(
            Index::create()
                .name("ix_message_threads_patient_last")
                .table(MessageThreads::Table)
                .col(MessageThreads::PatientId)
                .col(MessageThreads::LastMessageAt)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ThreadParticipants::Table)
                .col(uuid(ThreadParticipants::ThreadId))
                .col(uuid(ThreadParticipants::UserId))
                .col(string(ThreadParticipants::Role))
                .col(timestamp_with_time_zone(ThreadParticipants::JoinedAt))
                .col(big_integer(ThreadParticipants::LastReadSeq).default(0))
                .col(timestamp_with_time_zone_null(
                    ThreadParticipants::ArchivedAt,
                ))
                .primary_key(
                    Index::create()
                        .col(ThreadParticipants::ThreadId)
                        .col(ThreadParticipants::UserId),
                )
                .check(Expr::col(ThreadParticipants::Role).is_in(ROLES))
                .foreign_key(
                    ForeignKey::create()
                        .from(ThreadParticipants::Table, ThreadParticipants::ThreadId)
                        .to(MessageThreads::Table, MessageThreads::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(ThreadParticipants::Table, ThreadParticipants::UserId)
                        .to(Users::Table, Users::Id),
                )
                .to_owned(),
        )
        .await?;
        // A user's threads (the inbox, the unread count).
        m.create_index(
            Index::create()
                .name("ix_thread_participants_user")
                .table(ThreadParticipants::Table)
                .col(ThreadParticipants::UserId)
                .col(ThreadParticipants::ThreadId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Messages::Table)
                .col(uuid(Messages::Id).primary_key())
                .col(big_integer(Messages::Seq).unique_key())
                .col(uuid(Messages::ThreadId))
                .col(uuid(Messages::PatientId))
                .col(uuid(Messages::SenderId))
                .col(string(Messages::SenderRole))
                .col(binary(Messages::BodyEnc))
                .col(timestamp_with_time_zone(Messages::SentAt))
                .col(timestamp_with_time_zone_null(Messages::RetractedAt))
                .check(Expr::col(Messages::SenderRole).is_in(ROLES))
                .foreign_key(
                    ForeignKey::create()
                        .from(Messages::Table, Messages::ThreadId)
                        .to(MessageThreads::Table, MessageThreads::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Messages::Table, Messages::SenderId)
                        .to(Users::Table, Users::Id),
                )
                .to_owned(),
        )
        .await?;
        // A thread's messages in order (pages, unread counts, replay after a cursor).
        m.create_index(
            Index::create()
                .name("ix_messages_thread_seq")
                .table(Messages::Table)
                .col(Messages::ThreadId)
                .col(Messages::Seq)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(MessageAttachments::Table)
                .col(uuid(MessageAttachments::MessageId))
                .col(uuid(MessageAttachments::RecordId))
                .col(integer(MessageAttachments::Position))
                .primary_key(
                    Index::create()
                        .col(MessageAttachments::MessageId)
                        .col(MessageAttachments::RecordId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(MessageAttachments::Table, MessageAttachments::MessageId)
                        .to(Messages::Table, Messages::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(MessageAttachments::Table, MessageAttachments::RecordId)
                        .to(MedicalRecords::Table, MedicalRecords::Id),
                )
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            MessageAttachments::Table.into_iden(),
            Messages::Table.into_iden(),
            ThreadParticipants::Table.into_iden(),
            MessageThreads::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
