use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use super::types::ConsentScope;
use crate::access::{OwnerOnly, PatientScope, Viewer};
use crate::audit::{AuditEvent, WriteTxn};
use crate::error::{AppError, AppResult};
use entity::{consents, providers};

pub struct NewConsent {
    pub grantee_provider_id: Uuid,
    pub scopes: Vec<ConsentScope>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Record a consent. Takes the caller's transaction, so the grant and its audit row commit
/// with whatever else the caller does, or not at all.
pub async fn grant(
    tx: &mut WriteTxn,
    viewer: &Viewer,
    scope: &PatientScope<OwnerOnly>,
    c: NewConsent,
) -> AppResult<consents::Model> {
    if c.scopes.is_empty() {
        return Err(AppError::validation(
            "scopes",
            "must name at least one scope",
        ));
    }
    if c.expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(AppError::validation("expiresAt", "must be in the future"));
    }
    if providers::Entity::find_by_id(c.grantee_provider_id)
        .one(tx.conn())
        .await?
        .is_none()
    {
        return Err(AppError::validation(
            "granteeProviderId",
            "is not a known provider",
        ));
    }
    let id = Uuid::new_v4();
    let scopes = ConsentScope::join(&c.scopes);
    consents::Entity::insert(consents::ActiveModel {
        id: Set(id),
        patient_id: Set(scope.patient_id()),
        grantee_provider_id: Set(c.grantee_provider_id),
        scopes: Set(scopes.clone()),
        status: Set("ACTIVE".into()),
        granted_by: Set(viewer.user_id),
        granted_at: Set(Utc::now()),
        expires_at: Set(c.expires_at),
        withdrawn_at: Set(None),
        withdrawn_by: Set(None),
    })
    .exec_without_returning(tx.conn())
    .await?;
    tx.audit(
        AuditEvent::by(viewer, "consent.grant", "consent")
            .scope(scope)
            .resource(id.to_string())
            .detail(serde_json::json!({ "grantee": c.grantee_provider_id, "scopes": scopes })),
    );
    let row = consents::Entity::find_by_id(id)
        .one(tx.conn())
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(row)
}

pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> AppResult<Option<consents::Model>> {
    Ok(consents::Entity::find_by_id(id).one(db).await?)
}

/// Withdraw a consent, in the caller's transaction.
pub async fn withdraw(
    tx: &mut WriteTxn,
    viewer: &Viewer,
    scope: &PatientScope<OwnerOnly>,
    id: Uuid,
) -> AppResult<consents::Model> {
    let row = consents::Entity::find_by_id(id)
        .filter(consents::Column::PatientId.eq(scope.patient_id()))
        .one(tx.conn())
        .await?
        .ok_or(AppError::NotFound)?;
    if row.status != "ACTIVE" {
        return Err(AppError::Conflict("the consent is already withdrawn"));
    }
    let mut am: consents::ActiveModel = row.into();
    am.status = Set("WITHDRAWN".into());
    am.withdrawn_at = Set(Some(Utc::now()));
    am.withdrawn_by = Set(Some(viewer.user_id));
    consents::Entity::update(am).exec(tx.conn()).await?;
    tx.audit(
        AuditEvent::by(viewer, "consent.withdraw", "consent")
            .scope(scope)
            .resource(id.to_string()),
    );
    let row = consents::Entity::find_by_id(id)
        .one(tx.conn())
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(row)
}

/// Every consent of the patient, newest first (history included).
pub async fn list(
    db: &impl ConnectionTrait,
    scope: &PatientScope<OwnerOnly>,
) -> AppResult<Vec<consents::Model>> {
    Ok(consents::Entity::find()
        .filter(consents::Column::PatientId.eq(scope.patient_id()))
        .order_by_desc(consents::Column::GrantedAt)
        .order_by_desc(consents::Column::Id)
        .all(db)
        .await?)
}
