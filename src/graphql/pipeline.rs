//! The schema's one extension, through which every request passes on both transports:
//! the shape limits ([`super::limits`]) before anything parses or expands the document,
//! the operation cache's parse and validation hooks, the deny-by-default check on root
//! fields, a deadline checked as fields resolve, and the clean-up that gives every error a
//! code and our own words ([`super::request_errors`]).
//!
//! async-graphql runs every field of every request through each extension's `resolve` hook,
//! as a boxed future, whether the extension does anything there or not. One extension
//! instead of several halves that cost; the concerns stay in their own modules.
use std::any::TypeId;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest, NextRequest,
    NextResolve, NextSubscribe, NextValidation, ResolveInfo,
};
use async_graphql::{Data, Request, Response, ServerError, ServerResult, ValidationResult, Value};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::Limits;
use super::context::{ReadAudit, RequestCtx};
use super::deny_by_default;
use super::field_guards::FieldGuards;
use super::limits::{self, Refusal};
use super::operation_cache::{OperationCache, RequestCache};
use super::request_errors;
use crate::error::AppError;
use crate::state::AppState;

pub struct Pipeline {
    cache: OperationCache,
    cfg: Limits,
    guards: &'static FieldGuards,
}

impl Pipeline {
    /// `capacity`: operations the cache keeps (see [`OperationCache`]); the schema's limits
    /// give the shape bounds, the deadline and whether suggestions may be shown.
    /// `guards`: every field's declared guard, enforced on each field resolved.
    pub fn new(capacity: usize, limits: Limits, guards: &'static FieldGuards) -> Self {
        Pipeline {
            cache: OperationCache::new(capacity),
            cfg: limits,
            guards,
        }
    }
}

impl ExtensionFactory for Pipeline {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PipelineExt {
            cache: self.cache.request(),
            cfg: self.cfg,
            guards: self.guards,
            base: Instant::now(),
            deadline_ns: AtomicU64::new(0),
            subscription: AtomicBool::new(false),
            mutating: AtomicBool::new(false),
            suggestions: Arc::default(),
            counted: AtomicBool::new(false),
        })
    }
}

struct PipelineExt {
    cache: RequestCache,
    cfg: Limits,
    guards: &'static FieldGuards,
    /// When this request's extension was made: deadlines are kept as nanoseconds after it.
    base: Instant,
    /// The deadline of what is resolving now, in nanoseconds after `base` (0: none yet). Set
    /// when the request is prepared and, for a subscription, again as each event starts: a
    /// subscription lives for hours, and each event gets the whole budget.
    deadline_ns: AtomicU64,
    /// A subscription: every event is its own execution.
    subscription: AtomicBool,
    /// A mutation field has started. The deadline is checked before each mutation starts,
    /// never inside one: a change that committed late is answered, not reported as a
    /// failure that a client would retry.
    mutating: AtomicBool,
    /// Decided once the request's viewer is known; read when its errors are cleaned up.
    suggestions: Arc<OnceLock<bool>>,
    /// Whether this request was counted as unauthenticated (see `deny_by_default`).
    counted: AtomicBool,
}

impl PipelineExt {
    /// What resolves from now on has the whole time budget.
    fn start_clock(&self) {
        let at = nanos(self.base.elapsed() + self.cfg.deadline).max(1);
        self.deadline_ns.store(at, Ordering::Relaxed);
    }
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn signed_in(request: &Request) -> bool {
    request
        .data
        .get(&TypeId::of::<RequestCtx>())
        .and_then(|d| d.downcast_ref::<RequestCtx>())
        .and_then(|r| r.viewer.as_ref())
        .is_some_and(|v| !v.restricted)
}

#[async_trait::async_trait]
impl Extension for PipelineExt {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut resp = next.run(ctx).await;
        request_errors::clean(&mut resp, self.suggestions.get() == Some(&true));
        resp
    }

    /// A query or mutation (over HTTP or the websocket) runs with a [`ReadAudit`], whose
    /// rows are durable before the response is returned; if they cannot be written, the
    /// response is not sent but an INTERNAL error instead.
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if self.subscription.load(Ordering::Relaxed) {
            self.start_clock();
        }
        let reads = Arc::new(ReadAudit::default());
        let mut data = Data::default();
        data.insert(reads.clone());
        let resp = next.run_with_data(ctx, operation_name, data).await;
        let events = crate::audit::merge_reads(reads.take());
        if events.is_empty() {
            return resp;
        }
        let written = match ctx.data_opt::<AppState>() {
            Some(state) => state.audit.record_many(events).await,
            None => Err(AppError::internal_msg("AppState missing from schema data")),
        };
        match written {
            Ok(()) => resp,
            Err(e) => {
                let err = async_graphql::Error::from(e);
                let mut se = ServerError::new(err.message, None);
                se.extensions = err.extensions;
                Response::from_errors(vec![se])
            }
        }
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        self.subscription.store(true, Ordering::Relaxed);
        let suggestions = self.suggestions.clone();
        next.run(ctx, stream)
            .map(move |mut resp| {
                request_errors::clean(&mut resp, suggestions.get() == Some(&true));
                resp
            })
            .boxed()
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        // The rest of the chain first (the websocket's viewer), then the limits, right
        // before async-graphql would parse the text.
        let mut request = next.run(ctx, request).await?;
        self.start_clock();
        let _ = self
            .suggestions
            .set(self.cfg.suggestions && signed_in(&request));
        limits::check_variables(&request.variables, &self.cfg.shape)?;
        self.cache.prepare(&mut request, &self.cfg.shape)?;
        Ok(request)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        self.cache.validation(ctx, next).await
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let mutation = info.path_node.parent.is_none() && info.parent_type.ends_with("Mutation");
        let deadline = self.deadline_ns.load(Ordering::Relaxed);
        if (mutation || !self.mutating.load(Ordering::Relaxed))
            && deadline != 0
            && nanos(self.base.elapsed()) > deadline
        {
            return Err(Refusal::time().into());
        }
        if mutation {
            self.mutating.store(true, Ordering::Relaxed);
        }
        deny_by_default::resolve(ctx, info, next, &self.counted, self.guards).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::graphql::Limits;
    use crate::schema::schema_builder;

    #[tokio::test]
    async fn fields_past_the_deadline_are_not_resolved() {
        let schema = schema_builder(Limits {
            deadline: Duration::ZERO,
            ..Limits::default()
        })
        .finish();
        let resp = schema.execute("{ me { role } }").await;
        let e = &resp.errors[0];
        let ext = e.extensions.as_ref().unwrap();
        assert_eq!(ext.get("limit"), Some(&async_graphql::Value::from("time")));
        assert_eq!(
            ext.get("code"),
            Some(&async_graphql::Value::from("VALIDATION"))
        );
        // Within the deadline the same request reaches the resolver (and deny-by-default).
        let schema = schema_builder(Limits::default()).finish();
        let resp = schema.execute("{ me { role } }").await;
        let ext = resp.errors[0].extensions.as_ref().unwrap();
        assert_eq!(
            ext.get("code"),
            Some(&async_graphql::Value::from("UNAUTHENTICATED"))
        );
    }

    async fn suggestion_for(limits: Limits, signed_in: bool) -> String {
        use crate::graphql::context::RequestCtx;
        use crate::identity::{RequestMeta, Role, Viewer};
        let schema = schema_builder(limits).finish();
        let viewer = signed_in.then(|| {
            let id = uuid::Uuid::new_v4();
            Viewer::new(
                id,
                Role::Provider,
                None,
                Some(id),
                "s".into(),
                true,
                false,
                RequestMeta::default(),
            )
        });
        let req = async_graphql::Request::new("{ me { rolee } }").data(RequestCtx {
            viewer,
            meta: RequestMeta::default(),
        });
        schema.execute(req).await.errors[0].message.clone()
    }

    #[tokio::test]
    async fn suggestions_only_for_signed_in_callers_outside_production() {
        let dev = Limits::default();
        assert!(
            suggestion_for(dev, true)
                .await
                .contains("Did you mean \"role\"")
        );
        assert!(!suggestion_for(dev, false).await.contains("Did you mean"));
        let production = Limits {
            suggestions: false,
            ..Limits::default()
        };
        let m = suggestion_for(production, true).await;
        assert!(m.starts_with("unknown field (line 1"), "{m}");
        assert!(!m.contains("Did you mean"), "{m}");
    }
}
