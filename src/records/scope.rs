//! From an `access` grant to the rows a records service may touch. This is the only place
//! a [`RecordSet`] (the read capability of `family`) or a [`WriteGrant`] is built, and both
//! come only from what `access` handed out: a set never covers a kind the grant lacks, nor
//! a SENSITIVE record without the SENSITIVE consent.
use uuid::Uuid;

use super::family::{self, Record, RecordSet};
use super::kinds::{RecordKind, Sensitivity};
use crate::access::shares::ShareGrant;
use crate::access::{
    self, Allergies, ClinicalGrant, Documents, Immunizations, Medications, Records, WriteScope,
};
use crate::audit::PatientGrant;
use crate::consent::types::ConsentScope;
use crate::error::{AppError, AppResult};
use crate::identity::Viewer;
use crate::state::AppState;

/// What a read rests on: the patient's clinical grant, or a share of one record.
#[derive(Clone, Debug)]
enum Basis {
    Clinical(ClinicalGrant),
    Share(ShareGrant),
}

/// A read grant over some of one patient's record kinds (or over one shared record).
#[derive(Clone, Debug)]
pub struct ReadGrant {
    basis: Basis,
    set: RecordSet,
}

impl ReadGrant {
    pub fn set(&self) -> &RecordSet {
        &self.set
    }
}

impl ReadGrant {
    /// Whether the read rests on a share (its audit rows say so).
    pub fn shared(&self) -> bool {
        matches!(self.basis, Basis::Share(_))
    }
}

impl PatientGrant for ReadGrant {
    fn patient_id(&self) -> Uuid {
        match &self.basis {
            Basis::Clinical(g) => g.patient_id(),
            Basis::Share(s) => s.patient_id(),
        }
    }
    fn break_glass(&self) -> bool {
        match &self.basis {
            Basis::Clinical(g) => g.break_glass(),
            Basis::Share(_) => false,
        }
    }
}

/// The read grant a live share gives: that one record, whatever its kind or sensitivity
/// (the patient chose to share it).
pub fn shared(share: &ShareGrant, kind: RecordKind) -> ReadGrant {
    ReadGrant {
        set: RecordSet {
            patient_id: share.patient_id(),
            kinds: vec![kind],
            sensitive: true,
            record: Some(share.record_id()),
        },
        basis: Basis::Share(share.clone()),
    }
}

fn set_of(grant: &ClinicalGrant, kinds: Option<&[RecordKind]>) -> RecordSet {
    let covered = RecordKind::covered_by(grant.categories());
    let kinds = match kinds {
        Some(k) => covered.into_iter().filter(|c| k.contains(c)).collect(),
        None => covered,
    };
    RecordSet {
        patient_id: grant.patient_id(),
        kinds,
        sensitive: grant.sensitive(),
        record: None,
    }
}

/// The consent scopes `kinds` need, each once, in the kinds' order.
fn scopes_of(kinds: &[RecordKind]) -> Vec<ConsentScope> {
    let mut out: Vec<ConsentScope> = Vec::new();
    for k in kinds {
        if !out.contains(&k.consent()) {
            out.push(k.consent());
        }
    }
    out
}

/// Read `kinds` of a patient's records (None: every kind the viewer's grant covers). Asking
/// for a kind outside the grant is CONSENT_REQUIRED naming its scope (audited); a grant that
/// covers no kind at all is CONSENT_REQUIRED too.
pub async fn read(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    kinds: Option<&[RecordKind]>,
    action: &'static str,
) -> AppResult<ReadGrant> {
    let (wanted, explicit) = match kinds {
        Some(k) if !k.is_empty() => (scopes_of(k), true),
        _ => (scopes_of(RecordKind::VARIANTS), false),
    };
    let grant =
        access::clinical_grant(state, viewer, patient_id, &wanted, explicit, action).await?;
    let set = set_of(&grant, kinds.filter(|k| !k.is_empty()));
    Ok(ReadGrant {
        basis: Basis::Clinical(grant),
        set,
    })
}

/// One record by id, and the grant it was read under. NOT_FOUND (audited) when it does not
/// exist, when the viewer may not see its patient, and when it is SENSITIVE and the grant
/// does not cover that: a record nobody may know exists looks like one that does not.
/// Without its category's consent, a care-team provider gets CONSENT_REQUIRED.
pub async fn one(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    action: &'static str,
) -> AppResult<(ReadGrant, Record)> {
    let Some(row) = family::find(&state.db, id).await? else {
        return not_found(state, viewer, id, None, action).await;
    };
    let kind = RecordKind::parse(&row.kind)
        .ok_or_else(|| AppError::internal_msg("stored record kind is unknown"))?;
    // A provider holding a live share of this record reads it through the share.
    if let Some(share) = access::shares::share_grant(state, viewer, id).await? {
        let grant = shared(&share, kind);
        let rec = family::open(&state.keys, row)?;
        return Ok((grant, rec));
    }
    let sensitive = row.sensitivity != Sensitivity::Normal.as_str();
    let grant = match access::clinical_grant(
        state,
        viewer,
        row.patient_id,
        &[kind.consent()],
        true,
        action,
    )
    .await
    {
        // Without its category's consent, a SENSITIVE record is not there either.
        Err(AppError::ConsentRequired { .. }) if sensitive => {
            return not_found(state, viewer, id, Some(row.patient_id), action).await;
        }
        g => g?,
    };
    let set = set_of(&grant, Some(&[kind]));
    if !set.admits(&row) {
        return not_found(state, viewer, id, Some(row.patient_id), action).await;
    }
    let rec = family::open(&state.keys, row)?;
    Ok((
        ReadGrant {
            basis: Basis::Clinical(grant),
            set,
        },
        rec,
    ))
}

async fn not_found<T>(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    patient_id: Option<Uuid>,
    action: &'static str,
) -> AppResult<T> {
    access::refuse(
        state,
        viewer,
        action,
        "medical_record",
        id.to_string(),
        patient_id,
        AppError::NotFound,
    )
    .await
}

/// A write grant for one category of one patient's records, from `access`'s typed
/// [`WriteScope`]: never break-glass.
#[derive(Debug)]
pub enum WriteGrant {
    Records(WriteScope<Records>),
    Medications(WriteScope<Medications>),
    Allergies(WriteScope<Allergies>),
    Immunizations(WriteScope<Immunizations>),
    Documents(WriteScope<Documents>),
}

impl PatientGrant for WriteGrant {
    fn patient_id(&self) -> Uuid {
        match self {
            WriteGrant::Records(s) => s.patient_id(),
            WriteGrant::Medications(s) => s.patient_id(),
            WriteGrant::Allergies(s) => s.patient_id(),
            WriteGrant::Immunizations(s) => s.patient_id(),
            WriteGrant::Documents(s) => s.patient_id(),
        }
    }
    fn break_glass(&self) -> bool {
        false
    }
}

/// May the viewer write a record of `kind` for this patient (a SENSITIVE one when
/// `sensitive`)? Care-team providers need the kind's consent (and SENSITIVE); ADMIN may;
/// break-glass never.
pub async fn write(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    kind: RecordKind,
    sensitive: bool,
    action: &'static str,
) -> AppResult<WriteGrant> {
    use access::clinical_write_scope as w;
    let (s, v, p) = (state, viewer, patient_id);
    Ok(match kind.consent() {
        ConsentScope::Records => WriteGrant::Records(w(s, v, p, sensitive, action).await?),
        ConsentScope::Medications => WriteGrant::Medications(w(s, v, p, sensitive, action).await?),
        ConsentScope::Allergies => WriteGrant::Allergies(w(s, v, p, sensitive, action).await?),
        ConsentScope::Immunizations => {
            WriteGrant::Immunizations(w(s, v, p, sensitive, action).await?)
        }
        ConsentScope::Documents => WriteGrant::Documents(w(s, v, p, sensitive, action).await?),
        _ => {
            return Err(AppError::internal_msg(
                "record kind without a clinical scope",
            ));
        }
    })
}

/// May the viewer change this existing record? Decided from the record's patient, kind and
/// sensitivity; a record the viewer may not see at all is NOT_FOUND (audited).
pub async fn modify(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    action: &'static str,
) -> AppResult<WriteGrant> {
    let Some((patient_id, kind, sensitivity)) = family::locate(&state.db, id).await? else {
        return not_found(state, viewer, id, None, action).await;
    };
    // Whoever may not read a SENSITIVE record must not learn it exists by trying to change it.
    if sensitivity == Sensitivity::Sensitive {
        let g = access::clinical_grant(state, viewer, patient_id, &[kind.consent()], true, action)
            .await;
        if !matches!(g, Ok(g) if g.sensitive()) {
            return not_found(state, viewer, id, Some(patient_id), action).await;
        }
    }
    write(
        state,
        viewer,
        patient_id,
        kind,
        sensitivity == Sensitivity::Sensitive,
        action,
    )
    .await
}
