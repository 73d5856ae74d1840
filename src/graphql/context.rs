//! What resolvers may ask of the request context.
use async_graphql::Context;

use crate::error::{AppError, AppResult};
use crate::identity::{RequestMeta, Viewer};
use crate::state::AppState;

/// Per-request data, inserted by the HTTP and websocket handlers.
#[derive(Clone, Debug, Default)]
pub struct RequestCtx {
    pub viewer: Option<Viewer>,
    pub meta: RequestMeta,
}

pub trait ContextExt {
    fn state(&self) -> AppResult<&AppState>;
    fn meta(&self) -> RequestMeta;
    /// The signed-in viewer with full rights: UNAUTHENTICATED when absent, FORBIDDEN while
    /// the session is limited to MFA enrolment.
    fn viewer(&self) -> AppResult<&Viewer>;
    /// The signed-in viewer, even one whose session may only enrol MFA.
    fn viewer_allow_restricted(&self) -> AppResult<&Viewer>;
}

impl ContextExt for Context<'_> {
    fn state(&self) -> AppResult<&AppState> {
        self.data::<AppState>()
            .map_err(|_| AppError::internal_msg("AppState missing from schema data"))
    }

    fn meta(&self) -> RequestMeta {
        self.data_opt::<RequestCtx>()
            .map(|r| r.meta.clone())
            .unwrap_or_default()
    }

    fn viewer(&self) -> AppResult<&Viewer> {
        let v = self.viewer_allow_restricted()?;
        if v.restricted {
            return Err(AppError::Forbidden(MFA_ENROLMENT_REQUIRED));
        }
        Ok(v)
    }

    fn viewer_allow_restricted(&self) -> AppResult<&Viewer> {
        self.data_opt::<RequestCtx>()
            .and_then(|r| r.viewer.as_ref())
            .ok_or(AppError::Unauthenticated)
    }
}

pub const MFA_ENROLMENT_REQUIRED: &str = "multi-factor authentication is required for your role: enrol with enrollMfa and confirmMfa, then sign in again";
