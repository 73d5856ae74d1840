//! Per-request DataLoaders of clinical records (`schema::request_loaders` puts them on each
//! request). They only load children of parents that `access` already authorized:
//! resolvers obtain a `PatientScope` before calling them.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::service as records;
use crate::error::AppError;
use entity::allergies;

pub struct AllergiesByPatient {
    pub db: DatabaseConnection,
}

impl Loader<Uuid> for AllergiesByPatient {
    type Value = Vec<allergies::Model>;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        records::by_patients(&self.db, keys).await.map_err(Arc::new)
    }
}
