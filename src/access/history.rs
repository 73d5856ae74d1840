//! `accessHistory`: who touched a patient's data, and when.
use async_graphql::{Context, Enum, ID, Object, Result, SimpleObject};
use base64::Engine;
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::access;
use crate::audit::AuditEvent;
use crate::error::{AppError, AppResult};
use crate::graphql::context::ContextExt;
use crate::graphql::relay::{PageInfo, decode_cursor, encode_cursor, page_size, parse_id};
use crate::identity::Viewer;
use crate::state::AppState;
use entity::audit_log;

/// One access to a patient's data.
#[derive(SimpleObject)]
pub struct AccessEntry {
    pub occurred_at: DateTime<Utc>,
    /// User id of who acted (absent for anonymous attempts).
    pub actor_id: Option<ID>,
    pub actor_role: Option<String>,
    /// What happened, e.g. `patient.read`, `allergy.create`, `emergency_access.open`.
    pub action: String,
    /// SUCCESS, DENIED or FAILURE.
    pub outcome: String,
    /// The access rested on emergency (break-glass) access.
    pub break_glass: bool,
    /// The written reason, for `emergency_access.open`.
    pub reason: Option<String>,
    /// Under which grant the access happened (absent for anonymous attempts and system
    /// events).
    pub basis: Option<AccessBasis>,
}

/// The grant an access rested on.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum AccessBasis {
    /// A care-team provider, under the patient's consent.
    CareTeamConsent,
    /// A provider outside the care team, through a record the patient shared.
    Share,
    /// A provider's emergency (break-glass) access.
    BreakGlass,
    /// The patient themself.
    Owner,
    /// An administrator.
    Admin,
}

/// The detail key under which a read records that it rested on a share.
pub const SHARE_BASIS: &str = "share";

fn basis(row: &audit_log::Model) -> Option<AccessBasis> {
    match row.actor_role.as_deref()? {
        "ADMIN" => Some(AccessBasis::Admin),
        "PATIENT" => Some(AccessBasis::Owner),
        "PROVIDER" if row.break_glass => Some(AccessBasis::BreakGlass),
        "PROVIDER" if row.detail.contains(&format!("\"basis\":\"{SHARE_BASIS}\"")) => {
            Some(AccessBasis::Share)
        }
        "PROVIDER" => Some(AccessBasis::CareTeamConsent),
        _ => None,
    }
}

/// Open the break-glass reason sealed into an `emergency_access.open` row.
fn reason(keys: &crate::crypto::KeyRing, row: &audit_log::Model) -> Option<String> {
    if row.action != "emergency_access.open" {
        return None;
    }
    let id = uuid::Uuid::parse_str(row.resource_id.as_deref()?).ok()?;
    let detail: serde_json::Value = serde_json::from_str(&row.detail).ok()?;
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(detail["reason"].as_str()?)
        .ok()?;
    keys.open_str(super::service::reason_slot(&id), &sealed)
        .ok()
}

#[derive(SimpleObject)]
pub struct AccessEntryEdge {
    pub cursor: String,
    pub node: AccessEntry,
}

#[derive(SimpleObject)]
pub struct AccessHistoryConnection {
    pub edges: Vec<AccessEntryEdge>,
    pub page_info: PageInfo,
}

/// Access-history cursors: `a1:<seq>`.
const CURSOR: &str = "a1";

/// One page of the access history of a patient (or of one of their records: rows naming
/// it), newest first, under the owner-or-admin scope; the read itself is audited.
pub async fn page(
    state: &AppState,
    viewer: &Viewer,
    patient_id: uuid::Uuid,
    record: Option<uuid::Uuid>,
    first: i32,
    after: Option<String>,
) -> AppResult<AccessHistoryConnection> {
    let first = page_size(first)?;
    let after = after
        .as_deref()
        .map(|c| decode_cursor::<i64>(CURSOR, c))
        .transpose()?;
    let scope =
        access::owner_or_admin_scope(state, viewer, patient_id, "access_history.read").await?;
    let mut q = audit_log::Entity::find()
        .filter(audit_log::Column::PatientId.eq(patient_id))
        .order_by_desc(audit_log::Column::Seq)
        .limit(first + 1);
    if let Some(id) = record {
        // A record's own rows, and list reads that name it among those shown.
        let id = id.to_string();
        q = q.filter(
            sea_orm::Condition::any()
                .add(audit_log::Column::ResourceId.eq(id.clone()))
                .add(audit_log::Column::Detail.contains(format!("\"{id}\""))),
        );
    }
    if let Some(a) = after {
        q = q.filter(audit_log::Column::Seq.lt(a));
    }
    let mut rows = q.all(&state.db).await.map_err(AppError::from)?;
    let has_next = rows.len() as u64 > first;
    rows.truncate(first as usize);
    let mut ev = AuditEvent::by(viewer, "access_history.read", "patient")
        .scope(&scope)
        .resource(patient_id.to_string());
    if let Some(id) = record {
        ev = ev.detail(serde_json::json!({ "record": id.to_string() }));
    }
    state.audit.record(ev).await?;
    let edges: Vec<AccessEntryEdge> = rows
        .into_iter()
        .map(|r| AccessEntryEdge {
            cursor: encode_cursor(CURSOR, r.seq),
            node: AccessEntry {
                reason: reason(&state.keys, &r),
                basis: basis(&r),
                occurred_at: r.occurred_at,
                actor_id: r.actor_id.map(|u| ID(u.to_string())),
                actor_role: r.actor_role,
                action: r.action,
                outcome: r.outcome,
                break_glass: r.break_glass,
            },
        })
        .collect();
    Ok(AccessHistoryConnection {
        page_info: PageInfo::new(edges.iter().map(|e| &e.cursor), has_next, after.is_some()),
        edges,
    })
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// Who accessed this patient's data, newest first, and under which grant (the patient,
    /// or ADMIN).
    #[graphql(
        complexity = "1 + first.clamp(1, crate::graphql::relay::MAX_FIRST) as usize * child_complexity"
    )]
    async fn access_history(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<AccessHistoryConnection> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let patient_id = parse_id("patientId", &patient_id)?;
        Ok(page(state, viewer, patient_id, None, first, after).await?)
    }
}
