//! The one by-patient DataLoader of the record family: keyed by what a grant allows (a
//! [`RecordSet`], built only by `records::scope`) and an optional status, so a page of
//! patients loads each category in one query, and no key reaches rows its grant does not.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use sea_orm::DatabaseConnection;

use super::family::{self, ListFilter, Record, RecordSet};
use super::scope::ReadGrant;
use crate::crypto::KeyRing;
use crate::error::AppError;

/// What one load asks for: the grant's set and, optionally, the kind's own status.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordsKey {
    set: RecordSet,
    status: Option<&'static str>,
}

impl RecordsKey {
    pub fn new(grant: &ReadGrant, status: Option<&'static str>) -> Self {
        RecordsKey {
            set: grant.set().clone(),
            status,
        }
    }
}

pub struct RecordsByPatient {
    pub db: DatabaseConnection,
    pub keys: KeyRing,
}

impl Loader<RecordsKey> for RecordsByPatient {
    type Value = Vec<Record>;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[RecordsKey],
    ) -> Result<HashMap<RecordsKey, Self::Value>, Self::Error> {
        // One query per distinct status (in practice: one or two), whatever the patients.
        let mut by_status: HashMap<Option<&'static str>, Vec<RecordSet>> = HashMap::new();
        for k in keys {
            by_status.entry(k.status).or_default().push(k.set.clone());
        }
        let mut out = HashMap::new();
        for (status, sets) in by_status {
            let filter = ListFilter {
                status,
                ..ListFilter::default()
            };
            let found = family::by_sets(&self.db, &self.keys, &sets, &filter)
                .await
                .map_err(Arc::new)?;
            out.extend(
                found
                    .into_iter()
                    .map(|(set, rows)| (RecordsKey { set, status }, rows)),
            );
        }
        Ok(out)
    }
}
