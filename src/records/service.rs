//! Allergy storage: content encrypted, every write audited in its transaction.
use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use super::types::*;
use crate::access::{Allergies, Viewer, WriteScope};
use crate::audit::{AuditEvent, WriteTxn};
use crate::crypto::Slot;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use entity::allergies;

pub const TABLE: &str = "allergies";

pub struct NewAllergy {
    pub substance: String,
    pub reaction: Option<String>,
    pub severity: AllergySeverity,
}

/// Allergies of many (already authorized) patients in one query, for the DataLoader.
pub async fn by_patients(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> AppResult<HashMap<Uuid, Vec<allergies::Model>>> {
    let rows = allergies::Entity::find()
        .filter(allergies::Column::PatientId.is_in(ids.iter().copied()))
        .order_by_asc(allergies::Column::RecordedAt)
        .order_by_asc(allergies::Column::Id)
        .all(db)
        .await?;
    let mut out: HashMap<Uuid, Vec<allergies::Model>> = HashMap::new();
    for r in rows {
        out.entry(r.patient_id).or_default().push(r);
    }
    Ok(out)
}

/// Record an allergy. Takes a write scope, which break-glass never yields.
pub async fn record(
    state: &AppState,
    viewer: &Viewer,
    scope: &WriteScope<Allergies>,
    a: NewAllergy,
) -> AppResult<allergies::Model> {
    let id = Uuid::new_v4();
    let slot = |column| Slot {
        table: TABLE,
        column,
        row: &id,
    };
    let row = allergies::ActiveModel {
        id: Set(id),
        patient_id: Set(scope.patient_id()),
        substance_enc: Set(state.keys.seal_str(slot("substance"), &a.substance)?),
        reaction_enc: Set(a
            .reaction
            .as_deref()
            .map(|r| state.keys.seal_str(slot("reaction"), r))
            .transpose()?),
        severity: Set(a.severity.as_str().to_owned()),
        status: Set(AllergyStatus::Active.as_str().to_owned()),
        recorded_by: Set(viewer.user_id),
        recorded_at: Set(Utc::now()),
        resolved_by: Set(None),
        resolved_at: Set(None),
    };
    let mut tx = WriteTxn::begin(&state.db).await?;
    allergies::Entity::insert(row)
        .exec_without_returning(tx.conn())
        .await?;
    tx.audit(
        AuditEvent::by(viewer, "allergy.create", "allergy")
            .scope(scope.scope())
            .resource(id.to_string()),
    );
    let saved = allergies::Entity::find_by_id(id)
        .one(tx.conn())
        .await?
        .ok_or(AppError::NotFound)?;
    tx.commit().await?;
    Ok(saved)
}

/// The patient an allergy belongs to (for authorizing `resolveAllergy`).
pub async fn patient_of(db: &impl ConnectionTrait, allergy_id: Uuid) -> AppResult<Option<Uuid>> {
    Ok(allergies::Entity::find_by_id(allergy_id)
        .one(db)
        .await?
        .map(|a| a.patient_id))
}

/// Mark an allergy resolved (CONFLICT when it already is).
pub async fn resolve(
    state: &AppState,
    viewer: &Viewer,
    scope: &WriteScope<Allergies>,
    allergy_id: Uuid,
) -> AppResult<allergies::Model> {
    let mut tx = WriteTxn::begin(&state.db).await?;
    let row = allergies::Entity::find_by_id(allergy_id)
        .filter(allergies::Column::PatientId.eq(scope.patient_id()))
        .one(tx.conn())
        .await?
        .ok_or(AppError::NotFound)?;
    if row.status == AllergyStatus::Resolved.as_str() {
        return Err(AppError::Conflict("the allergy is already resolved"));
    }
    let mut am: allergies::ActiveModel = row.into();
    am.status = Set(AllergyStatus::Resolved.as_str().to_owned());
    am.resolved_by = Set(Some(viewer.user_id));
    am.resolved_at = Set(Some(Utc::now()));
    allergies::Entity::update(am).exec(tx.conn()).await?;
    tx.audit(
        AuditEvent::by(viewer, "allergy.resolve", "allergy")
            .scope(scope.scope())
            .resource(allergy_id.to_string()),
    );
    let saved = allergies::Entity::find_by_id(allergy_id)
        .one(tx.conn())
        .await?
        .ok_or(AppError::NotFound)?;
    tx.commit().await?;
    Ok(saved)
}
