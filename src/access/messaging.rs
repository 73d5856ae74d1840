//! Who may read and write a patient's secure messages. A thread is about one patient and
//! goes through the same decision as their chart first (NOT_FOUND for a patient the viewer
//! may not see), then: the patient reads and writes all their threads; an ADMIN reads
//! every thread and joins one by writing to it; a care-team provider needs the patient's
//! MESSAGES consent (CONSENT_REQUIRED) and reads and writes only threads they take part
//! in; a provider holding emergency access reads every thread of the patient, read-only.
//! The same decision as a SQL condition ([`readable_threads`]) keeps the inbox, its total
//! and the unread count to what a single read may see.
use chrono::Utc;
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::{
    BREAK_GLASS_READ_ONLY, ConsentScope, DE_IDENTIFIED_ONLY, Role, Viewer, deny, refuse,
    visible_standing,
};
use crate::audit::PatientGrant;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use entity::{care_team, consents, message_threads, patients, thread_participants, users};

/// A grant over one patient's messages: which threads it reads (`every_thread`: the patient,
/// an ADMIN, break-glass; otherwise the viewer's own) and whether it may write. Only this
/// module builds one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MessagingGrant {
    patient_id: Uuid,
    break_glass: bool,
    every_thread: bool,
    writable: bool,
}

impl MessagingGrant {
    pub fn patient_id(&self) -> Uuid {
        self.patient_id
    }
    /// Reads every thread of the patient, not only those the viewer takes part in.
    pub fn every_thread(&self) -> bool {
        self.every_thread
    }
    pub fn writable(&self) -> bool {
        self.writable
    }
}

impl PatientGrant for MessagingGrant {
    fn patient_id(&self) -> Uuid {
        self.patient_id
    }
    fn break_glass(&self) -> bool {
        self.break_glass
    }
}

/// A grant over one thread: read; `writable` to send in it; `participant` when the viewer
/// takes part (and so has a read state and may archive it). Only this module builds one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ThreadGrant {
    thread_id: Uuid,
    patient_id: Uuid,
    break_glass: bool,
    writable: bool,
    participant: bool,
}

impl ThreadGrant {
    pub fn thread_id(&self) -> Uuid {
        self.thread_id
    }
    pub fn writable(&self) -> bool {
        self.writable
    }
    pub fn participant(&self) -> bool {
        self.participant
    }
}

impl PatientGrant for ThreadGrant {
    fn patient_id(&self) -> Uuid {
        self.patient_id
    }
    fn break_glass(&self) -> bool {
        self.break_glass
    }
}

const RESEARCHERS: &str = DE_IDENTIFIED_ONLY;
const NO_MESSAGES: ConsentScope = ConsentScope::Messages;

/// May the viewer read (with `write`: start threads in) this patient's messages?
pub async fn messaging_grant(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    write: bool,
    action: &'static str,
) -> AppResult<MessagingGrant> {
    let rel = visible_standing(state, viewer, patient_id, true, action, RESEARCHERS).await?;
    let grant = |every_thread, writable, break_glass| MessagingGrant {
        patient_id,
        break_glass,
        every_thread,
        writable,
    };
    let own = viewer.role == Role::Patient && viewer.patient_id == Some(patient_id);
    if own || viewer.role == Role::Admin {
        return Ok(grant(true, true, false));
    }
    // A visible provider: on the care team, or holding emergency access (or both).
    if rel.care_team && rel.consents_to(NO_MESSAGES) {
        return Ok(grant(false, true, false));
    }
    let e = if rel.care_team {
        // Emergency access reads past a missing consent, but never writes.
        if rel.emergency && !write {
            return Ok(grant(true, false, true));
        }
        AppError::ConsentRequired {
            scope: NO_MESSAGES.as_str(),
        }
    } else if write {
        AppError::Forbidden(BREAK_GLASS_READ_ONLY)
    } else {
        return Ok(grant(true, false, true));
    };
    deny(state, viewer, patient_id, action, e).await
}

/// The thread row and the grant over it. NOT_FOUND (audited) when it does not exist and
/// when the viewer may not read it, so a thread's existence is never given away.
pub async fn thread_grant(
    state: &AppState,
    viewer: &Viewer,
    thread_id: Uuid,
    write: bool,
    action: &'static str,
) -> AppResult<(ThreadGrant, message_threads::Model)> {
    let Some((thread, participant)) = thread_and_part(state, viewer, thread_id).await? else {
        return not_found(state, viewer, thread_id, None, action).await;
    };
    let patient_id = thread.patient_id;
    // A thread the viewer takes no part in is NOT_FOUND to a care-team provider before
    // anything else is said about the patient.
    let outsider = viewer.role == Role::Provider && !participant;
    let messaging = match messaging_grant(state, viewer, patient_id, write, action).await {
        Ok(g) => g,
        Err(AppError::ConsentRequired { .. }) if outsider => {
            return not_found(state, viewer, thread_id, Some(patient_id), action).await;
        }
        Err(e) => return Err(e),
    };
    if !(messaging.every_thread || participant) {
        return not_found(state, viewer, thread_id, Some(patient_id), action).await;
    }
    let writable = messaging.writable && (participant || viewer.role != Role::Provider);
    if write && !writable {
        let e = AppError::Forbidden(BREAK_GLASS_READ_ONLY);
        return deny(state, viewer, patient_id, action, e).await;
    }
    let own = viewer.role == Role::Patient && viewer.patient_id == Some(patient_id);
    Ok((
        ThreadGrant {
            thread_id,
            patient_id,
            break_glass: messaging.break_glass,
            writable,
            participant: participant || own,
        },
        thread,
    ))
}

/// The thread row and whether the viewer takes part in it, in one statement.
async fn thread_and_part(
    state: &AppState,
    viewer: &Viewer,
    thread_id: Uuid,
) -> AppResult<Option<(message_threads::Model, bool)>> {
    #[derive(sea_orm::FromQueryResult)]
    struct Row {
        id: Uuid,
        patient_id: Uuid,
        subject_enc: Vec<u8>,
        created_by: Uuid,
        created_at: chrono::DateTime<Utc>,
        last_message_at: chrono::DateTime<Utc>,
        cg_participant: bool,
    }
    let row = message_threads::Entity::find_by_id(thread_id)
        .select_only()
        .columns(<message_threads::Column as sea_orm::Iterable>::iter())
        .expr_as(Expr::exists(takes_part(viewer)), "cg_participant")
        .into_model::<Row>()
        .one(&state.db)
        .await?;
    Ok(row.map(|r| {
        (
            message_threads::Model {
                id: r.id,
                patient_id: r.patient_id,
                subject_enc: r.subject_enc,
                created_by: r.created_by,
                created_at: r.created_at,
                last_message_at: r.last_message_at,
            },
            r.cg_participant,
        )
    }))
}

async fn not_found<T>(
    state: &AppState,
    viewer: &Viewer,
    thread_id: Uuid,
    patient_id: Option<Uuid>,
    action: &'static str,
) -> AppResult<T> {
    let e = match viewer.role {
        Role::Researcher => AppError::Forbidden(RESEARCHERS),
        _ => AppError::NotFound,
    };
    refuse(
        state,
        viewer,
        action,
        "message_thread",
        thread_id.to_string(),
        patient_id,
        e,
    )
    .await
}

/// Who a new thread goes to, besides its author: the providers named (each on the
/// patient's care team and holding the patient's MESSAGES consent), or, when none are
/// named, every such provider. Returns provider ids; the caller holds a writable grant.
pub async fn recipients(
    state: &AppState,
    viewer: &Viewer,
    grant: &MessagingGrant,
    named: Option<&[Uuid]>,
    action: &'static str,
) -> AppResult<Vec<Uuid>> {
    let patient_id = grant.patient_id;
    let team: Vec<Uuid> = care_team::Entity::find()
        .filter(care_team::Column::PatientId.eq(patient_id))
        .select_only()
        .column(care_team::Column::ProviderId)
        .into_tuple()
        .all(&state.db)
        .await?;
    let consented = super::load_consents_of_patient(&state.db, patient_id, &team).await?;
    let may_receive = |p: &Uuid| consented.get(p).is_some_and(|s| s.contains(&NO_MESSAGES));
    let own_provider = viewer.provider_id.filter(|_| viewer.role == Role::Provider);
    match named {
        Some(ids) => {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if Some(*id) == own_provider || out.contains(id) {
                    continue;
                }
                if !team.contains(id) {
                    let e = AppError::validation(
                        "providerIds",
                        "must name providers on the patient's care team",
                    );
                    return deny(state, viewer, patient_id, action, e).await;
                }
                if !may_receive(id) {
                    let e = AppError::ConsentRequired {
                        scope: NO_MESSAGES.as_str(),
                    };
                    return deny(state, viewer, patient_id, action, e).await;
                }
                out.push(*id);
            }
            Ok(out)
        }
        None => {
            let out: Vec<Uuid> = team
                .iter()
                .copied()
                .filter(|p| Some(*p) != own_provider && may_receive(p))
                .collect();
            if out.is_empty() && own_provider.is_none() {
                let e = AppError::ConsentRequired {
                    scope: NO_MESSAGES.as_str(),
                };
                return deny(state, viewer, patient_id, action, e).await;
            }
            Ok(out)
        }
    }
}

/// Subquery, correlated with `message_threads`: a row when the viewer takes part in the
/// thread.
fn takes_part(viewer: &Viewer) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .expr(Expr::val(1))
        .from(thread_participants::Entity)
        .and_where(
            Expr::col((
                thread_participants::Entity,
                thread_participants::Column::ThreadId,
            ))
            .equals((message_threads::Entity, message_threads::Column::Id)),
        )
        .and_where(
            Expr::col((
                thread_participants::Entity,
                thread_participants::Column::UserId,
            ))
            .eq(viewer.user_id),
        )
        .to_owned()
}

/// SQL condition on `message_threads` selecting the threads the viewer reads in their
/// inbox: those they take part in (a patient: all of their own), of a patient they may
/// still see, and for a provider only while on the care team under MESSAGES consent.
pub fn readable_threads(viewer: &Viewer) -> AppResult<Condition> {
    let thread_patient =
        || Expr::col((message_threads::Entity, message_threads::Column::PatientId));
    let participant = takes_part(viewer);
    let live_patient = Query::select()
        .expr(Expr::val(1))
        .from(patients::Entity)
        .and_where(
            Expr::col((patients::Entity, patients::Column::Id))
                .equals((message_threads::Entity, message_threads::Column::PatientId)),
        )
        .and_where(Expr::col((patients::Entity, patients::Column::ArchivedAt)).is_null())
        .to_owned();
    match viewer.role {
        Role::Patient => Ok(match viewer.patient_id {
            Some(id) => Condition::all()
                .add(thread_patient().eq(id))
                .add(Expr::exists(live_patient)),
            None => Condition::any(),
        }),
        Role::Admin => Ok(Condition::all().add(Expr::exists(participant))),
        Role::Provider => {
            let Some(provider) = viewer.provider_id else {
                return Ok(Condition::any());
            };
            let team = Query::select()
                .expr(Expr::val(1))
                .from(care_team::Entity)
                .and_where(
                    Expr::col((care_team::Entity, care_team::Column::PatientId))
                        .equals((message_threads::Entity, message_threads::Column::PatientId)),
                )
                .and_where(
                    Expr::col((care_team::Entity, care_team::Column::ProviderId)).eq(provider),
                )
                .to_owned();
            let consent = Query::select()
                .expr(Expr::val(1))
                .from(consents::Entity)
                .and_where(
                    Expr::col((consents::Entity, consents::Column::PatientId))
                        .equals((message_threads::Entity, message_threads::Column::PatientId)),
                )
                .and_where(
                    Expr::col((consents::Entity, consents::Column::GranteeProviderId)).eq(provider),
                )
                .and_where(Expr::col((consents::Entity, consents::Column::Status)).eq("ACTIVE"))
                .cond_where(
                    Condition::any()
                        .add(Expr::col((consents::Entity, consents::Column::ExpiresAt)).is_null())
                        .add(
                            Expr::col((consents::Entity, consents::Column::ExpiresAt))
                                .gt(Utc::now()),
                        ),
                )
                // Stored sorted and comma-separated: match one whole name.
                .and_where(
                    Expr::cust("(',' || consents.scopes || ',')")
                        .like(format!("%,{},%", NO_MESSAGES.as_str())),
                )
                .to_owned();
            Ok(Condition::all()
                .add(Expr::exists(participant))
                .add(Expr::exists(live_patient))
                .add(Expr::exists(team))
                .add(Expr::exists(consent)))
        }
        Role::Researcher => Err(AppError::Forbidden(RESEARCHERS)),
    }
}

/// The user accounts of these providers and of the patient (the patient may have none: a
/// thread can exist before they sign up), as `(user_id, role)`.
pub async fn participant_users(
    state: &AppState,
    patient_id: Uuid,
    provider_ids: &[Uuid],
) -> AppResult<Vec<(Uuid, Role)>> {
    let rows: Vec<(Uuid, String)> = users::Entity::find()
        .filter(
            Condition::any()
                .add(
                    Condition::all()
                        .add(users::Column::Role.eq(Role::Provider.as_str()))
                        .add(users::Column::ProviderId.is_in(provider_ids.iter().copied())),
                )
                .add(
                    Condition::all()
                        .add(users::Column::Role.eq(Role::Patient.as_str()))
                        .add(users::Column::PatientId.eq(patient_id)),
                ),
        )
        .select_only()
        .column(users::Column::Id)
        .column(users::Column::Role)
        .into_tuple()
        .all(&state.db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, role)| Role::parse(&role).map(|r| (id, r)))
        .collect())
}
