//! Deny by default, on every field: each field resolves only under the guard the schema's
//! table declares for it (`schema::guards`, enforced here through [`FieldGuards`]). A field with no declared guard is refused (fail closed), so a new
//! field is unreachable until its guard is written down; root fields carry their role rule
//! there; row checks follow in `access`.
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::extensions::{ExtensionContext, NextResolve, ResolveInfo};
use async_graphql::{PathSegment, QueryPathSegment, ServerError, ServerResult, Value};

use super::context::{MFA_ENROLMENT_REQUIRED, RequestCtx};
use super::field_guards::{FieldGuards, Guard};
use crate::audit::{AuditEvent, Outcome};
use crate::error::AppError;
use crate::state::AppState;

fn refuse(e: AppError, info: &ResolveInfo<'_>) -> ServerError {
    let err = async_graphql::Error::from(e);
    let mut se = ServerError::new(err.message, None);
    se.extensions = err.extensions;
    se.path = vec![PathSegment::Field(
        info.alias.unwrap_or(info.name).to_owned(),
    )];
    se
}

/// Record a refusal by the table (durably) before answering it.
async fn audited(
    ctx: &ExtensionContext<'_>,
    viewer: &crate::identity::Viewer,
    info: &ResolveInfo<'_>,
    reason: &'static str,
) -> ServerResult<()> {
    if let Some(state) = ctx.data_opt::<AppState>() {
        let ev = AuditEvent::by(viewer, "guard.denied", "field")
            .resource(info.name.to_owned())
            .outcome(Outcome::Denied)
            .detail(serde_json::json!({ "code": "FORBIDDEN", "reason": reason }));
        state.audit.record(ev).await.map_err(|e| refuse(e, info))?;
    }
    Ok(())
}

/// The `resolve` hook: refuse a field the viewer may not reach under its declared guard,
/// then resolve. `counted` is the request's: an anonymous request is counted once for the
/// security summary (`security.unauthenticated`), however many fields it names.
pub async fn resolve(
    ctx: &ExtensionContext<'_>,
    info: ResolveInfo<'_>,
    next: NextResolve<'_>,
    counted: &AtomicBool,
    guards: &FieldGuards,
) -> ServerResult<Option<Value>> {
    // A list's items pass through here too, named after the list field: that field was
    // checked already.
    if info.is_for_introspection || matches!(info.path_node.segment, QueryPathSegment::Index(_)) {
        return next.run(ctx, info).await;
    }
    // Introspection is not in the table: its root fields (`__schema`, `__type`, a root
    // `__typename`) need a signed-in viewer (the schema turns them off in production);
    // `__typename` below the root is the type's name, which its parent already guarded.
    let declared = if info.name.starts_with("__") {
        if info.path_node.parent.is_some() {
            return next.run(ctx, info).await;
        }
        Some(Guard::SignedIn)
    } else if info.path_node.parent.is_none() && info.parent_type.ends_with("Subscription") {
        // A merged subscription's root fields resolve under their component's name
        // (`MessagesSubscription`); the schema, and the table, know them as `Subscription`.
        guards.lookup("Subscription", info.name)
    } else {
        guards.lookup(info.parent_type, info.name)
    };
    let Some(guard) = declared else {
        tracing::error!(
            parent = info.parent_type,
            field = info.name,
            "field without a declared guard: refused"
        );
        return Err(refuse(
            AppError::internal_msg("field without a declared guard"),
            &info,
        ));
    };
    if guard == Guard::Public {
        return next.run(ctx, info).await;
    }
    let request = ctx.data_opt::<RequestCtx>();
    match request.and_then(|r| r.viewer.as_ref()) {
        None => {
            if !counted.swap(true, Ordering::Relaxed)
                && let Some(state) = ctx.data_opt::<AppState>()
            {
                state
                    .audit
                    .note_unauthenticated(request.and_then(|r| r.meta.ip.as_ref()));
            }
            return Err(refuse(AppError::Unauthenticated, &info));
        }
        Some(v) if v.restricted && guard != Guard::Restricted => {
            audited(ctx, v, &info, "mfa_enrolment_required").await?;
            return Err(refuse(AppError::Forbidden(MFA_ENROLMENT_REQUIRED), &info));
        }
        Some(v) => {
            if let Guard::Roles(roles) = guard
                && !roles.contains(&v.role)
            {
                audited(ctx, v, &info, "role").await?;
                return Err(refuse(
                    AppError::Forbidden("your role may not use this operation"),
                    &info,
                ));
            }
        }
    }
    next.run(ctx, info).await
}
