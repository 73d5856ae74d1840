//! Deny by default at the root: every Query/Mutation/Subscription field needs a signed-in,
//! unrestricted viewer unless it is listed here. A new root field is therefore closed until
//! someone decides otherwise; role and row checks follow in guards and `access`.
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::extensions::{ExtensionContext, NextResolve, ResolveInfo};
use async_graphql::{PathSegment, ServerError, ServerResult, Value};

use super::context::{MFA_ENROLMENT_REQUIRED, RequestCtx};
use crate::audit::{AuditEvent, Outcome};
use crate::error::AppError;
use crate::state::AppState;

/// Root fields open to anonymous callers.
pub const PUBLIC_FIELDS: &[&str] = &["login", "verifyMfa", "refreshSession"];
/// Root fields a session restricted to MFA enrolment may still use.
pub const RESTRICTED_FIELDS: &[&str] = &["me", "enrollMfa", "confirmMfa", "logout"];

fn refuse(e: AppError, info: &ResolveInfo<'_>) -> ServerError {
    let err = async_graphql::Error::from(e);
    let mut se = ServerError::new(err.message, None);
    se.extensions = err.extensions;
    se.path = vec![PathSegment::Field(
        info.alias.unwrap_or(info.name).to_owned(),
    )];
    se
}

/// The `resolve` hook: refuse a root field the viewer may not reach, then resolve.
/// `counted` is the request's: an anonymous request is counted once for the security
/// summary (`security.unauthenticated`), however many root fields it names.
pub async fn resolve(
    ctx: &ExtensionContext<'_>,
    info: ResolveInfo<'_>,
    next: NextResolve<'_>,
    counted: &AtomicBool,
) -> ServerResult<Option<Value>> {
    // Every field without a parent is a root field, whatever the root types are named: a
    // rename cannot open the check.
    if info.path_node.parent.is_none()
        && !info.is_for_introspection
        && !PUBLIC_FIELDS.contains(&info.name)
    {
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
            Some(v) if v.restricted && !RESTRICTED_FIELDS.contains(&info.name) => {
                if let Some(state) = ctx.data_opt::<AppState>() {
                    let ev = AuditEvent::by(v, "guard.denied", "field")
                        .resource(info.name.to_owned())
                        .outcome(Outcome::Denied)
                        .detail(serde_json::json!({ "code": "FORBIDDEN", "reason": "mfa_enrolment_required" }));
                    state.audit.record(ev).await.map_err(|e| refuse(e, &info))?;
                }
                return Err(refuse(AppError::Forbidden(MFA_ENROLMENT_REQUIRED), &info));
            }
            Some(_) => {}
        }
    }
    next.run(ctx, info).await
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

    use super::{PUBLIC_FIELDS, RESTRICTED_FIELDS};

    /// The open lists name fields the schema has at its roots: a renamed field closes (it
    /// is no longer listed), and this test says which name went stale.
    #[test]
    fn listed_fields_exist_at_the_roots() {
        let doc = async_graphql::parser::parse_schema(crate::schema::sdl()).unwrap();
        let mut roots = Vec::new();
        for def in doc.definitions {
            if let TypeSystemDefinition::Type(t) = def
                && ["Query", "Mutation", "Subscription"].contains(&t.node.name.node.as_str())
                && let TypeKind::Object(o) = &t.node.kind
            {
                roots.extend(o.fields.iter().map(|f| f.node.name.node.to_string()));
            }
        }
        for name in PUBLIC_FIELDS.iter().chain(RESTRICTED_FIELDS) {
            assert!(
                roots.iter().any(|r| r == name),
                "{name} is not a root field"
            );
        }
    }
}
