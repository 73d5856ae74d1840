//! Schema assembly: the domain roots merged into one schema, plus limits and extensions.
pub mod context;
pub mod deny_by_default;
#[cfg(test)]
mod fuzz_tests;
pub mod guards;
pub mod limits;
pub mod loaders;
pub mod operation_cache;
pub mod pipeline;
pub mod relay;
pub mod request_errors;
pub mod ws_session;

use async_graphql::dataloader::DataLoader;
use async_graphql::{EmptySubscription, MergedObject, Schema};

use crate::access::graphql::AccessMutation;
use crate::audit::graphql::AuditQuery;
use crate::auth::graphql::{AuthMutation, AuthQuery};
use crate::consent::graphql::{ConsentMutation, ConsentQuery};
use crate::patients::graphql::{PatientMutation, PatientQuery};
use crate::records::graphql::RecordsMutation;
use crate::state::AppState;

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(AuthQuery, PatientQuery, ConsentQuery, AuditQuery);

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    AuthMutation,
    PatientMutation,
    ConsentMutation,
    RecordsMutation,
    AccessMutation,
);

pub type AppSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Limits applied to every operation.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub depth: usize,
    pub complexity: usize,
    pub introspection: bool,
    /// Bounds checked before the text is parsed and before the document is expanded.
    pub shape: limits::ShapeLimits,
    /// Execution stops at the next field once a request has run this long.
    pub deadline: std::time::Duration,
    /// "Did you mean …" for signed-in callers; off in production.
    pub suggestions: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            depth: 12,
            complexity: 1000,
            introspection: true,
            shape: limits::ShapeLimits::default(),
            deadline: std::time::Duration::from_secs(10),
            suggestions: true,
        }
    }
}

impl Limits {
    /// The limits a server with this configuration applies.
    pub fn of(cfg: &crate::config::Config) -> Limits {
        Limits {
            depth: cfg.query_depth_limit,
            complexity: cfg.query_complexity_limit,
            introspection: cfg.introspection,
            suggestions: !cfg.is_production(),
            ..Limits::default()
        }
    }
}

/// The schema without state: enough to print the SDL.
pub fn schema_builder(
    limits: Limits,
) -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, EmptySubscription> {
    let mut b = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        EmptySubscription,
    )
    .limit_depth(limits.depth)
    .limit_complexity(limits.complexity)
    .limit_recursive_depth(32)
    .limit_directives(20)
    .extension(pipeline::Pipeline::new(512, limits));
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

/// The schema websocket operations run on: the same, plus the extension that resolves the
/// viewer from the socket's token for each operation. A schema of its own, so that HTTP
/// requests do not pass through an extension that has nothing to do for them.
pub fn build_ws(state: &AppState) -> AppSchema {
    build_with(state, |b| b.extension(ws_session::WsViewer))
}

fn build_with(
    state: &AppState,
    extend: impl FnOnce(
        async_graphql::SchemaBuilder<QueryRoot, MutationRoot, EmptySubscription>,
    ) -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, EmptySubscription>,
) -> AppSchema {
    extend(schema_builder(Limits::of(&state.cfg)))
        .data(state.clone())
        .finish()
}

/// The SDL as `caregraph schema` prints it and `schema.graphql` stores it.
pub fn sdl() -> String {
    schema_builder(Limits::default()).finish().sdl()
}

/// Per-request loaders.
pub fn request_loaders(state: &AppState) -> DataLoader<loaders::AllergiesByPatient> {
    DataLoader::new(
        loaders::AllergiesByPatient {
            db: state.db.clone(),
        },
        tokio::spawn,
    )
}
