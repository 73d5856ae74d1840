//! The domain's per-request DataLoaders: providers by id, and care teams by patient. A bare
//! id is the right key for both: the provider directory is not patient PHI (any signed-in
//! user may list it), and a care team is only ever asked for by a `Patient` the viewer was
//! already allowed to see (`Patient.careTeam`).
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

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

/// The providers on each patient's care team: two queries for a page of patients.
pub struct CareTeamsByPatient {
    pub db: DatabaseConnection,
}

impl Loader<Uuid> for CareTeamsByPatient {
    type Value = Vec<providers::Model>;
    type Error = Arc<AppError>;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        service::care_teams(&self.db, ids).await.map_err(Arc::new)
    }
}
