//! Who may see and act on a patient's bills and coverage. Visibility first (NOT_FOUND for a
//! patient the viewer may not see), then: the patient sees and pays their own; an ADMIN
//! sees all and issues, voids and refunds; a care-team provider reads under the patient's
//! BILLING consent (CONSENT_REQUIRED otherwise) and never pays or changes anything;
//! emergency access does not reach billing (it is for care, FORBIDDEN).
use uuid::Uuid;

use super::{ConsentScope, DE_IDENTIFIED_ONLY, Role, Viewer, deny, visible_standing};
use crate::audit::PatientGrant;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// What a billing action needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BillingAction {
    Read,
    /// Pay a statement, add a coverage or check it: the patient or an ADMIN.
    Act,
    /// Issue, void, refund: an ADMIN.
    Administer,
}

/// A grant over one patient's billing. Only this module builds one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BillingGrant {
    patient_id: Uuid,
    may_act: bool,
    may_administer: bool,
}

impl BillingGrant {
    pub fn patient_id(&self) -> Uuid {
        self.patient_id
    }
    pub fn may_act(&self) -> bool {
        self.may_act
    }
    pub fn may_administer(&self) -> bool {
        self.may_administer
    }
}

impl PatientGrant for BillingGrant {
    fn patient_id(&self) -> Uuid {
        self.patient_id
    }
    fn break_glass(&self) -> bool {
        false
    }
}

/// May the viewer do `what` with this patient's billing?
pub async fn billing_grant(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    what: BillingAction,
    action: &'static str,
) -> AppResult<BillingGrant> {
    let rel = visible_standing(state, viewer, patient_id, true, action, DE_IDENTIFIED_ONLY).await?;
    let own = viewer.role == Role::Patient && viewer.patient_id == Some(patient_id);
    let admin = viewer.role == Role::Admin;
    let grant = BillingGrant {
        patient_id,
        may_act: own || admin,
        may_administer: admin,
    };
    let e = match what {
        BillingAction::Administer if admin => return Ok(grant),
        BillingAction::Act if own || admin => return Ok(grant),
        BillingAction::Read if own || admin => return Ok(grant),
        BillingAction::Read if rel.care_team && rel.consents_to(ConsentScope::Billing) => {
            return Ok(grant);
        }
        BillingAction::Read if rel.care_team => AppError::ConsentRequired {
            scope: ConsentScope::Billing.as_str(),
        },
        BillingAction::Read => AppError::Forbidden("emergency access does not cover billing"),
        BillingAction::Act => {
            AppError::Forbidden("only the patient or an administrator may do this")
        }
        BillingAction::Administer => AppError::Forbidden("only an administrator may do this"),
    };
    deny(state, viewer, patient_id, action, e).await
}
