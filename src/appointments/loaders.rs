//! The domain's per-request DataLoaders: providers by id, and care teams by patient. A bare
//! id is the right key for both: the provider directory is not patient PHI (any signed-in
//! user may list it), and a care team is only ever asked for by a `Patient` the viewer was
//! already allowed to see (`Patient.careTeam`).
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::access::{Demographics, PatientScope};

use super::service;
use crate::error::AppError;
use entity::providers;

/// The providers loader as requests hold it: cached, since a calendar names its provider on
/// every appointment.
pub type Providers = DataLoader<ProvidersById, HashMapCache>;

/// The care-teams loader as requests hold it.
pub type CareTeams = DataLoader<CareTeamsByPatient>;

/// Providers by id: one query for every provider a response names.
pub struct ProvidersById {
    pub db: DatabaseConnection,
}

impl Loader<Uuid> for ProvidersById {
    type Value = providers::Model;
    type Error = Arc<AppError>;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = service::providers_by_ids(&self.db, ids)
            .await
            .map_err(Arc::new)?;
        Ok(rows.into_iter().map(|p| (p.id, p)).collect())
    }
}

/// The providers on each patient's care team: two queries for a page of patients. Keyed by
/// the demographics scope `access` granted for each patient, never by a bare id.
pub struct CareTeamsByPatient {
    pub db: DatabaseConnection,
}

impl Loader<PatientScope<Demographics>> for CareTeamsByPatient {
    type Value = Vec<providers::Model>;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        scopes: &[PatientScope<Demographics>],
    ) -> Result<HashMap<PatientScope<Demographics>, Self::Value>, Self::Error> {
        let ids: Vec<Uuid> = scopes.iter().map(|s| s.patient_id()).collect();
        let mut teams = service::care_teams(&self.db, &ids)
            .await
            .map_err(Arc::new)?;
        Ok(scopes
            .iter()
            .map(|s| (s.clone(), teams.remove(&s.patient_id()).unwrap_or_default()))
            .collect())
    }
}
