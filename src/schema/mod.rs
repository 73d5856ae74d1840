//! Schema assembly: the domain roots merged into one schema, with the limits and
//! extensions every operation runs under (`crate::graphql`), and the per-request loaders.
mod appointment_patient;
#[cfg(test)]
mod fuzz_tests;
pub mod guards;

use async_graphql::dataloader::{DataLoader, HashMapCache};
use async_graphql::{MergedObject, MergedSubscription, Schema};

use crate::access::graphql::AccessMutation;
use crate::access::history::AuditQuery;
use crate::appointments::graphql::{AppointmentsMutation, AppointmentsQuery};
use crate::appointments::live::AppointmentsSubscription;
use crate::appointments::loaders::{CareTeams, CareTeamsByPatient, Providers, ProvidersById};
use crate::auth::graphql::{AuthMutation, AuthQuery};
use crate::billing::graphql::{BillingMutation, BillingQuery};
use crate::consent::graphql::{ConsentMutation, ConsentQuery};
use crate::graphql::{Limits, pipeline};
use crate::messages::graphql::{
    MessagesMutation, MessagesQuery, Participants, ParticipantsByThread,
};
use crate::messages::live::MessagesSubscription;
use crate::patients::graphql::{PatientMutation, PatientQuery, SharedQuery};
use crate::records::corrections::{CorrectionsByRecord, CorrectionsMutation};
use crate::records::graphql::{RecordsMutation, RecordsQuery};
use crate::records::shares::SharesMutation;
use crate::state::AppState;

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    AuthQuery,
    PatientQuery,
    RecordsQuery,
    AppointmentsQuery,
    SharedQuery,
    ConsentQuery,
    AuditQuery,
    MessagesQuery,
    BillingQuery,
);

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    AuthMutation,
    PatientMutation,
    ConsentMutation,
    RecordsMutation,
    AppointmentsMutation,
    SharesMutation,
    CorrectionsMutation,
    AccessMutation,
    MessagesMutation,
    BillingMutation,
);

#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(MessagesSubscription, AppointmentsSubscription);

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// The schema without state: enough to print the SDL.
pub fn schema_builder(
    limits: Limits,
) -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    let mut b = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    .limit_depth(limits.depth)
    .limit_complexity(limits.complexity)
    .limit_recursive_depth(32)
    .limit_directives(20)
    .extension(pipeline::Pipeline::new(512, limits, &guards::GUARDS));
    if !limits.introspection {
        b = b.disable_introspection();
    }
    if !limits.suggestions {
        b = b.disable_suggestions();
    }
    b
}

/// The schema HTTP requests run on: the handler has already resolved the viewer.
pub fn build(state: &AppState) -> AppSchema {
    build_with(state, |b| b)
}

/// The schema with `state`, after `extend` has added to the builder (the websocket schema's
/// extension, `http::ws_session::build_ws`).
pub fn build_with(
    state: &AppState,
    extend: impl FnOnce(
        async_graphql::SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot>,
    ) -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot>,
) -> AppSchema {
    extend(schema_builder(Limits::of(&state.cfg)))
        .data(state.clone())
        .finish()
}

/// The SDL as `caregraph schema` prints it and `schema.graphql` stores it.
pub fn sdl() -> String {
    schema_builder(Limits::default()).finish().sdl()
}

pub use appointment_patient::AppointmentPatients;

/// The per-request loaders (and the per-request read of appointments' patients), built for
/// each operation and handed to it with [`RequestLoaders::attach`].
pub struct RequestLoaders {
    pub corrections: DataLoader<CorrectionsByRecord>,
    pub providers: Providers,
    pub care_teams: CareTeams,
    pub appointment_patients: AppointmentPatients,
    pub participants: Participants,
}

impl RequestLoaders {
    /// The request with every loader in its data.
    pub fn attach(self, req: async_graphql::Request) -> async_graphql::Request {
        req.data(self.corrections)
            .data(self.providers)
            .data(self.care_teams)
            .data(self.appointment_patients)
            .data(self.participants)
    }
}

/// Per-request loaders.
pub fn request_loaders(state: &AppState) -> RequestLoaders {
    RequestLoaders {
        corrections: DataLoader::new(
            CorrectionsByRecord {
                db: state.db.clone(),
                keys: state.keys.clone(),
            },
            tokio::spawn,
        ),
        // Cached: a calendar names its provider on every appointment.
        providers: DataLoader::with_cache(
            ProvidersById {
                db: state.db.clone(),
            },
            tokio::spawn,
            HashMapCache::default(),
        ),
        care_teams: DataLoader::new(
            CareTeamsByPatient {
                db: state.db.clone(),
            },
            tokio::spawn,
        ),
        appointment_patients: AppointmentPatients::default(),
        participants: DataLoader::new(
            ParticipantsByThread {
                db: state.db.clone(),
            },
            tokio::spawn,
        ),
    }
}
