//! The one access policy: who may do what to which patient's data.
//!
//! Guards and services ask here and nowhere else. A granted check hands out a
//! [`PatientScope`], which services that touch a patient's data require, so an unchecked
//! call does not compile. The same decision also exists as a SQL condition
//! ([`visible_patients`]) so lists, counts and cursors only ever see what a single read may.
pub mod graphql;
pub mod service;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::Enum;
use chrono::Utc;
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audit::{AuditEvent, Outcome};
use crate::consent::types::ConsentScope;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use entity::{care_team, consents, emergency_access, patients};

/// What a signed-in user is.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Patient,
    Provider,
    Admin,
    Researcher,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "PATIENT",
            Role::Provider => "PROVIDER",
            Role::Admin => "ADMIN",
            Role::Researcher => "RESEARCHER",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Patient, Role::Provider, Role::Admin, Role::Researcher]
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// Most bytes of a client's user agent that requests and audit rows keep.
pub const USER_AGENT_MAX: usize = 256;

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Where a request came from; copied into every audit row.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    pub ip: Option<Arc<str>>,
    pub user_agent: Option<Arc<str>>,
    pub request_id: Option<Arc<str>>,
}

/// Who is asking. Built once per request from the access token and the session store; the
/// only thing resolvers consult about identity.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub user_id: Uuid,
    pub role: Role,
    pub patient_id: Option<Uuid>,
    pub provider_id: Option<Uuid>,
    pub session_id: String,
    pub mfa_enrolled: bool,
    /// MFA is required for this role and not yet enrolled: only enrolment is allowed.
    pub restricted: bool,
    pub meta: RequestMeta,
    relationships: Arc<Mutex<HashMap<Uuid, Relationship>>>,
}

impl Viewer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        user_id: Uuid,
        role: Role,
        patient_id: Option<Uuid>,
        provider_id: Option<Uuid>,
        session_id: String,
        mfa_enrolled: bool,
        restricted: bool,
        meta: RequestMeta,
    ) -> Self {
        Viewer {
            user_id,
            role,
            patient_id,
            provider_id,
            session_id,
            mfa_enrolled,
            restricted,
            meta,
            relationships: Arc::default(),
        }
    }
}

/// Proof that the viewer may touch this patient's data for this purpose. Only this module
/// constructs it.
#[derive(Clone, Debug)]
pub struct PatientScope {
    patient_id: Uuid,
    break_glass: bool,
}

impl PatientScope {
    pub fn patient_id(&self) -> Uuid {
        self.patient_id
    }
    /// Access rests on an emergency (break-glass) grant; audit rows are flagged.
    pub fn break_glass(&self) -> bool {
        self.break_glass
    }
}

/// A provider's standing towards one patient, loaded once per request.
#[derive(Clone, Debug, Default)]
struct Relationship {
    care_team: bool,
    emergency: bool,
    /// Active consent scopes; `None` until a clinical field needs them.
    scopes: Option<Vec<ConsentScope>>,
}

/// SQL condition on `patients` selecting exactly the rows the viewer may read
/// (archived rows are filtered by the caller). RESEARCHER reads no identified patient.
pub fn visible_patients(viewer: &Viewer) -> AppResult<Condition> {
    match viewer.role {
        Role::Admin => Ok(Condition::all()),
        Role::Patient => match viewer.patient_id {
            Some(id) => Ok(Condition::all().add(patients::Column::Id.eq(id))),
            None => Ok(Condition::any()), // matches nothing
        },
        Role::Provider => {
            let Some(provider) = viewer.provider_id else {
                return Ok(Condition::any());
            };
            use sea_orm::sea_query::Expr;
            let (team, emergency) = provider_standing(Expr::val(provider), Expr::val(Utc::now()));
            Ok(Condition::any().add(team).add(emergency))
        }
        Role::Researcher => Err(AppError::Forbidden(
            "researchers receive de-identified extracts only, not identified patient data",
        )),
    }
}

/// A provider's standing towards the `patients` row in scope, as two correlated EXISTS: on
/// the patient's care team, and holding unexpired emergency access. `provider` and `now` are
/// expressions, so lists bind them as values and the batched read (`patients::reads`) can
/// take the provider from each pair and `now` from a placeholder.
///
/// Correlated EXISTS, not `id IN (subquery)`: PostgreSQL answers an IN over an OR by hashing
/// the provider's whole care team on every query (25 ms at 100,000 patients, growing with
/// the team), while EXISTS probes the care-team index for just the rows the other conditions
/// leave (0.2 ms for a family-name search).
pub fn provider_standing(
    provider: impl Into<sea_orm::sea_query::SimpleExpr>,
    now: impl Into<sea_orm::sea_query::SimpleExpr>,
) -> (
    sea_orm::sea_query::SimpleExpr,
    sea_orm::sea_query::SimpleExpr,
) {
    use sea_orm::sea_query::Expr;
    let provider: sea_orm::sea_query::SimpleExpr = provider.into();
    let team = Query::select()
        .expr(Expr::val(1))
        .from(care_team::Entity)
        .and_where(
            Expr::col((care_team::Entity, care_team::Column::PatientId))
                .equals((patients::Entity, patients::Column::Id)),
        )
        .and_where(
            Expr::col((care_team::Entity, care_team::Column::ProviderId)).eq(provider.clone()),
        )
        .to_owned();
    let emergency = Query::select()
        .expr(Expr::val(1))
        .from(emergency_access::Entity)
        .and_where(
            Expr::col((
                emergency_access::Entity,
                emergency_access::Column::PatientId,
            ))
            .equals((patients::Entity, patients::Column::Id)),
        )
        .and_where(
            Expr::col((
                emergency_access::Entity,
                emergency_access::Column::ProviderId,
            ))
            .eq(provider),
        )
        .and_where(
            Expr::col((
                emergency_access::Entity,
                emergency_access::Column::ExpiresAt,
            ))
            .gt(now),
        )
        .to_owned();
    (Expr::exists(team), Expr::exists(emergency))
}

/// The patient themself and ADMIN hold every scope on a patient's data.
fn own_or_admin(viewer: &Viewer, patient_id: Uuid) -> Option<PatientScope> {
    let own = viewer.role == Role::Patient && viewer.patient_id == Some(patient_id);
    (own || viewer.role == Role::Admin).then_some(PatientScope {
        patient_id,
        break_glass: false,
    })
}

/// Refuse (audited) a viewer who holds no scope: NOT_FOUND for other patients (and anyone
/// who must not learn the patient exists), FORBIDDEN with `researcher` for researchers.
async fn refuse_outsider(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    action: &'static str,
    researcher: &'static str,
) -> AppResult<PatientScope> {
    let e = match viewer.role {
        Role::Researcher => AppError::Forbidden(researcher),
        _ => AppError::NotFound,
    };
    deny(state, viewer, patient_id, action, e).await
}

const DE_IDENTIFIED_ONLY: &str = "researchers receive de-identified extracts only";

/// The scope for reading or changing a patient's demographics, given that the patient row
/// was found under [`visible_patients`]. Providers learn whether it rests on break-glass.
pub async fn demographics_scope(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
) -> AppResult<PatientScope> {
    if let Some(scope) = own_or_admin(viewer, patient_id) {
        return Ok(scope);
    }
    if viewer.role == Role::Provider {
        let rel = relationship(state, viewer, patient_id, false).await?;
        if rel.care_team || rel.emergency {
            let break_glass = !rel.care_team && rel.emergency;
            return Ok(PatientScope {
                patient_id,
                break_glass,
            });
        }
    }
    refuse_outsider(
        state,
        viewer,
        patient_id,
        "patient.read",
        DE_IDENTIFIED_ONLY,
    )
    .await
}

/// May the viewer read or write this clinical category of this patient?
pub async fn clinical_scope(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    scope: ConsentScope,
    action: &'static str,
) -> AppResult<PatientScope> {
    if let Some(s) = own_or_admin(viewer, patient_id) {
        return Ok(s);
    }
    if viewer.role == Role::Provider {
        let rel = relationship(state, viewer, patient_id, true).await?;
        if rel.care_team && rel.scopes.as_ref().is_some_and(|s| s.contains(&scope)) {
            return Ok(PatientScope {
                patient_id,
                break_glass: false,
            });
        }
        if rel.emergency {
            return Ok(PatientScope {
                patient_id,
                break_glass: true,
            });
        }
        if rel.care_team {
            let e = AppError::ConsentRequired {
                scope: scope.as_str(),
            };
            return deny(state, viewer, patient_id, action, e).await;
        }
    }
    refuse_outsider(state, viewer, patient_id, action, DE_IDENTIFIED_ONLY).await
}

/// Only the patient themself or an ADMIN (consent management, access history).
pub async fn owner_or_admin_scope(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    action: &'static str,
) -> AppResult<PatientScope> {
    if let Some(s) = own_or_admin(viewer, patient_id) {
        return Ok(s);
    }
    const ONLY_OWNER: &str = "only the patient or an administrator may do this";
    if viewer.role == Role::Provider {
        // A provider who may see the patient learns nothing new from FORBIDDEN; one who
        // may not gets NOT_FOUND.
        let rel = relationship(state, viewer, patient_id, false).await?;
        if rel.care_team || rel.emergency {
            return deny(
                state,
                viewer,
                patient_id,
                action,
                AppError::Forbidden(ONLY_OWNER),
            )
            .await;
        }
    }
    refuse_outsider(state, viewer, patient_id, action, ONLY_OWNER).await
}

/// Scope for a patient the ADMIN acts on (archive, restore, care-team changes).
pub async fn admin_scope(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    action: &'static str,
) -> AppResult<PatientScope> {
    if viewer.role == Role::Admin {
        return Ok(PatientScope {
            patient_id,
            break_glass: false,
        });
    }
    let e = AppError::Forbidden("this operation is for administrators");
    deny(state, viewer, patient_id, action, e).await
}

/// Scope for a patient that is being created: the creator (ADMIN or PROVIDER) acts on it.
pub fn creation_scope(viewer: &Viewer, patient_id: Uuid) -> AppResult<PatientScope> {
    match viewer.role {
        Role::Admin | Role::Provider => Ok(PatientScope {
            patient_id,
            break_glass: false,
        }),
        _ => Err(AppError::Forbidden(
            "only providers and administrators register patients",
        )),
    }
}

/// Record the denial of an action on a patient's data in the audit log (durably) and
/// return the error.
pub async fn deny<T>(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    action: &'static str,
    err: AppError,
) -> AppResult<T> {
    refuse(
        state,
        viewer,
        action,
        "patient",
        patient_id.to_string(),
        Some(patient_id),
        err,
    )
    .await
}

/// Record any denial (durably) and return the error.
pub async fn refuse<T>(
    state: &AppState,
    viewer: &Viewer,
    action: &'static str,
    resource_type: &'static str,
    resource_id: String,
    patient_id: Option<Uuid>,
    err: AppError,
) -> AppResult<T> {
    let mut ev = AuditEvent::by(viewer, action, resource_type)
        .resource(resource_id)
        .outcome(Outcome::Denied)
        .detail(serde_json::json!({ "code": err.code() }));
    ev.patient_id = patient_id;
    state.audit.record(ev).await?;
    Err(err)
}

async fn relationship(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    need_scopes: bool,
) -> AppResult<Relationship> {
    let Some(provider) = viewer.provider_id else {
        return Ok(Relationship::default());
    };
    let cached = lock(&viewer.relationships).get(&patient_id).cloned();
    let rel = match cached {
        Some(r) if r.scopes.is_some() || !need_scopes => return Ok(r),
        Some(mut r) => {
            r.scopes = Some(
                load_scopes(&state.db, provider, &[patient_id])
                    .await?
                    .remove(&patient_id)
                    .unwrap_or_default(),
            );
            r
        }
        None => load_relationships(&state.db, provider, &[patient_id], need_scopes)
            .await?
            .remove(&patient_id)
            .unwrap_or_default(),
    };
    lock(&viewer.relationships).insert(patient_id, rel.clone());
    Ok(rel)
}

/// Record what a combined query already established (see `patients::service::get`), so the
/// scope check that follows needs no query of its own.
pub fn remember(viewer: &Viewer, patient_id: Uuid, care_team: bool, emergency: bool) {
    lock(&viewer.relationships)
        .entry(patient_id)
        .or_insert(Relationship {
            care_team,
            emergency,
            scopes: None,
        });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Load the viewer's relationships to many patients at once (three queries, whatever the
/// count) into the per-request cache, so a page of patients does not query per row.
pub async fn preload(state: &AppState, viewer: &Viewer, patient_ids: &[Uuid]) -> AppResult<()> {
    let Some(provider) = viewer.provider_id.filter(|_| viewer.role == Role::Provider) else {
        return Ok(());
    };
    let missing: Vec<Uuid> = {
        let cache = lock(&viewer.relationships);
        patient_ids
            .iter()
            .copied()
            .filter(|id| !cache.contains_key(id))
            .collect()
    };
    if missing.is_empty() {
        return Ok(());
    }
    let loaded = load_relationships(&state.db, provider, &missing, true).await?;
    lock(&viewer.relationships).extend(loaded);
    Ok(())
}

async fn load_relationships(
    db: &impl ConnectionTrait,
    provider: Uuid,
    patient_ids: &[Uuid],
    with_scopes: bool,
) -> AppResult<HashMap<Uuid, Relationship>> {
    let now = Utc::now();
    let ids = || patient_ids.iter().copied();
    let mut out: HashMap<Uuid, Relationship> =
        ids().map(|id| (id, Relationship::default())).collect();
    let team: Vec<Uuid> = care_team::Entity::find()
        .filter(care_team::Column::PatientId.is_in(ids()))
        .filter(care_team::Column::ProviderId.eq(provider))
        .select_only()
        .column(care_team::Column::PatientId)
        .into_tuple()
        .all(db)
        .await?;
    for id in team {
        out.entry(id).or_default().care_team = true;
    }
    let emergency: Vec<Uuid> = emergency_access::Entity::find()
        .filter(emergency_access::Column::PatientId.is_in(ids()))
        .filter(emergency_access::Column::ProviderId.eq(provider))
        .filter(emergency_access::Column::ExpiresAt.gt(now))
        .select_only()
        .column(emergency_access::Column::PatientId)
        .into_tuple()
        .all(db)
        .await?;
    for id in emergency {
        out.entry(id).or_default().emergency = true;
    }
    if with_scopes {
        for (id, scopes) in load_scopes(db, provider, patient_ids).await? {
            out.entry(id).or_default().scopes = Some(scopes);
        }
        for r in out.values_mut() {
            r.scopes.get_or_insert_with(Vec::new);
        }
    }
    Ok(out)
}

/// Active, unexpired consent scopes the patients granted this provider.
async fn load_scopes(
    db: &impl ConnectionTrait,
    provider: Uuid,
    patient_ids: &[Uuid],
) -> AppResult<HashMap<Uuid, Vec<ConsentScope>>> {
    let now = Utc::now();
    let grants: Vec<(Uuid, String, Option<chrono::DateTime<Utc>>)> = consents::Entity::find()
        .filter(consents::Column::PatientId.is_in(patient_ids.iter().copied()))
        .filter(consents::Column::GranteeProviderId.eq(provider))
        .filter(consents::Column::Status.eq("ACTIVE"))
        .select_only()
        .column(consents::Column::PatientId)
        .column(consents::Column::Scopes)
        .column(consents::Column::ExpiresAt)
        .into_tuple()
        .all(db)
        .await?;
    let mut out: HashMap<Uuid, Vec<ConsentScope>> = HashMap::new();
    for (id, stored, expires) in grants {
        if expires.is_none_or(|t| t > now) {
            out.entry(id)
                .or_default()
                .extend(ConsentScope::split(&stored));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod clip_tests {
    use super::clip;

    #[test]
    fn clip_cuts_at_a_character_boundary() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 3), "abc");
        // "é" is two bytes: a cut through it falls back to before it.
        assert_eq!(clip("aé", 2), "a");
        assert_eq!(clip("aé", 3), "aé");
    }
}
