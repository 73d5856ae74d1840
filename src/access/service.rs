//! Care-team membership and break-glass grants: the facts the policy decides on.
use base64::Engine;
use chrono::{Duration, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use uuid::Uuid;

use super::{AdminOnly, PatientScope, Viewer};
use crate::audit::{AuditEvent, WriteTxn};
use crate::crypto::Slot;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use entity::{care_team, emergency_access, patients, providers};

/// Put a provider on the patient's care team, in the caller's transaction.
pub async fn assign_care_team(
    tx: &mut WriteTxn,
    viewer: &Viewer,
    scope: &PatientScope<AdminOnly>,
    provider_id: Uuid,
) -> AppResult<()> {
    let patient_id = scope.patient_id();
    if patients::Entity::find_by_id(patient_id)
        .one(tx.conn())
        .await?
        .is_none()
    {
        return Err(AppError::NotFound);
    }
    if providers::Entity::find_by_id(provider_id)
        .one(tx.conn())
        .await?
        .is_none()
    {
        return Err(AppError::validation(
            "providerId",
            "is not a known provider",
        ));
    }
    care_team::Entity::insert(care_team::ActiveModel {
        patient_id: Set(patient_id),
        provider_id: Set(provider_id),
        assigned_by: Set(Some(viewer.user_id)),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(tx.conn())
    .await
    .map_err(|e| match AppError::from(e) {
        AppError::Conflict(_) => {
            AppError::Conflict("the provider is already on this patient's care team")
        }
        other => other,
    })?;
    tx.audit(
        AuditEvent::by(viewer, "care_team.assign", "care_team")
            .scope(scope)
            .resource(provider_id.to_string()),
    );
    Ok(())
}

/// Take a provider off the patient's care team, in the caller's transaction.
pub async fn remove_care_team(
    tx: &mut WriteTxn,
    viewer: &Viewer,
    scope: &PatientScope<AdminOnly>,
    provider_id: Uuid,
) -> AppResult<()> {
    let res = care_team::Entity::delete_many()
        .filter(care_team::Column::PatientId.eq(scope.patient_id()))
        .filter(care_team::Column::ProviderId.eq(provider_id))
        .exec(tx.conn())
        .await?;
    if res.rows_affected == 0 {
        return Err(AppError::NotFound);
    }
    tx.audit(
        AuditEvent::by(viewer, "care_team.remove", "care_team")
            .scope(scope)
            .resource(provider_id.to_string()),
    );
    Ok(())
}

/// Open time-limited emergency access for a provider outside the care team. The reason is
/// kept encrypted; the audit row is flagged as break-glass. CONFLICT while the provider
/// already holds a live grant for the patient: one grant at a time, never extended by
/// re-opening. In the caller's transaction (`state` gives the keys and the grant's length).
pub async fn open_emergency_access(
    tx: &mut WriteTxn,
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    reason: &str,
) -> AppResult<emergency_access::Model> {
    let Some(provider) = viewer.provider_id else {
        return Err(AppError::Forbidden("only providers open emergency access"));
    };
    let exists = patients::Entity::find_by_id(patient_id)
        .filter(patients::Column::ArchivedAt.is_null())
        .one(tx.conn())
        .await?
        .is_some();
    if !exists {
        return Err(AppError::NotFound);
    }
    let on_team = care_team::Entity::find_by_id((patient_id, provider))
        .one(tx.conn())
        .await?
        .is_some();
    if on_team {
        return Err(AppError::Conflict(
            "you are on this patient's care team; emergency access is not needed",
        ));
    }
    let id = Uuid::new_v4();
    let now = Utc::now();
    let expires = now + Duration::minutes(state.cfg.break_glass_minutes);
    let reason_enc = state.keys.seal_str(
        Slot {
            table: "emergency_access",
            column: "reason",
            row: &id,
        },
        reason,
    )?;
    // The audit row carries the reason too, sealed to the audit log so it stays PHI-free at
    // rest; `accessHistory` opens it for the patient and administrators.
    let audit_reason = state.keys.seal_str(reason_slot(&id), reason)?;
    // Inside the write transaction, which serialises writers: two opens at once cannot both
    // find no live grant.
    let live = emergency_access::Entity::find()
        .filter(emergency_access::Column::PatientId.eq(patient_id))
        .filter(emergency_access::Column::ProviderId.eq(provider))
        .filter(emergency_access::Column::ExpiresAt.gt(now))
        .select_only()
        .column(emergency_access::Column::Id)
        .into_tuple::<Uuid>()
        .one(tx.conn())
        .await?
        .is_some();
    if live {
        return Err(AppError::Conflict(
            "you already hold emergency access to this patient; it stays open until it expires",
        ));
    }
    emergency_access::Entity::insert(emergency_access::ActiveModel {
        id: Set(id),
        patient_id: Set(patient_id),
        provider_id: Set(provider),
        reason_enc: Set(reason_enc),
        opened_at: Set(now),
        expires_at: Set(expires),
    })
    .exec_without_returning(tx.conn())
    .await?;
    tx.audit(
        AuditEvent::by(viewer, "emergency_access.open", "emergency_access")
            .patient(patient_id)
            .resource(id.to_string())
            .break_glass(true)
            .detail(serde_json::json!({
                "expiresAt": expires.to_rfc3339(),
                "reason": base64::engine::general_purpose::STANDARD.encode(audit_reason),
            })),
    );
    let row = emergency_access::Entity::find_by_id(id)
        .one(tx.conn())
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(row)
}

/// Where the break-glass reason is sealed inside an audit row's detail.
pub fn reason_slot(emergency_access_id: &Uuid) -> Slot<'_> {
    Slot {
        table: "audit_log",
        column: "reason",
        row: emergency_access_id,
    }
}
