//! What resolvers may ask of the request context.
use std::sync::{Arc, Mutex};

use async_graphql::Context;

use crate::audit::AuditEvent;
use crate::error::{AppError, AppResult};
use crate::identity::{RequestMeta, Viewer};
use crate::state::AppState;

/// Marks a request that arrived over HTTP, whose response can carry headers (a websocket
/// message's cannot): `login` may then deliver the refresh token as a cookie.
#[derive(Clone, Copy, Debug)]
pub struct OverHttp;

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

/// The read audit rows of one executing operation, written together before its response
/// leaves (by the pipeline's `execute` hook, see [`super::pipeline`]): a home screen that
/// reads five lists waits on the audit writer once, not five times. Nothing is lost by
/// waiting: a response whose rows could not be made durable is replaced by an INTERNAL
/// error before it is sent. A subscription event has no such buffer and writes at once.
#[derive(Default)]
pub struct ReadAudit(Mutex<Vec<AuditEvent>>);

impl ReadAudit {
    pub(super) fn take(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Audit what a resolver is about to show: into the operation's [`ReadAudit`] when it has
/// one (written, durably, before the response leaves), at once otherwise.
pub async fn audit_reads(ctx: &Context<'_>, events: Vec<AuditEvent>) -> AppResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    match ctx.data_opt::<Arc<ReadAudit>>() {
        Some(buf) => {
            buf.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(events);
            Ok(())
        }
        None => ctx.state()?.audit.record_many(events).await,
    }
}

/// [`audit_reads`] of one event.
pub async fn audit_read(ctx: &Context<'_>, event: AuditEvent) -> AppResult<()> {
    audit_reads(ctx, vec![event]).await
}
