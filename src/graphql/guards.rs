//! Coarse, database-free guards. Row-level decisions live in `access`.
use async_graphql::{Context, Guard, Result};

use super::context::ContextExt;
use crate::audit::{AuditEvent, Outcome};
use crate::error::AppError;
use crate::identity::Role;

/// Allows the listed roles; everyone else gets FORBIDDEN (audited).
pub struct RoleGuard(pub &'static [Role]);

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        let viewer = ctx.viewer()?;
        if self.0.contains(&viewer.role) {
            return Ok(());
        }
        let state = ctx.state()?;
        state
            .audit
            .record(
                AuditEvent::by(viewer, "guard.denied", "field")
                    .resource(ctx.field().name().to_owned())
                    .outcome(Outcome::Denied)
                    .detail(serde_json::json!({ "code": "FORBIDDEN" })),
            )
            .await?;
        Err(AppError::Forbidden("your role may not use this operation").into())
    }
}

pub const STAFF: &[Role] = &[Role::Admin, Role::Provider];
pub const ADMIN: &[Role] = &[Role::Admin];
pub const PATIENT_DATA_ROLES: &[Role] = &[Role::Admin, Role::Provider, Role::Patient];
