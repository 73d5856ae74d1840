//! The schema's one extension: the operation cache's parse and validation hooks and the
//! deny-by-default check on root fields.
//!
//! async-graphql runs every field of every request through each extension's `resolve` hook,
//! as a boxed future, whether the extension does anything there or not. One extension
//! instead of two halves that cost; the two concerns stay in their own modules
//! ([`super::operation_cache`], [`super::deny_by_default`]).
use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest, NextResolve, NextValidation,
    ResolveInfo,
};
use async_graphql::{Request, ServerError, ServerResult, ValidationResult, Value};

use super::deny_by_default;
use super::operation_cache::{OperationCache, RequestCache};

pub struct Pipeline {
    cache: OperationCache,
}

impl Pipeline {
    /// `capacity`: operations the cache keeps (see [`OperationCache`]).
    pub fn new(capacity: usize) -> Self {
        Pipeline {
            cache: OperationCache::new(capacity),
        }
    }
}

impl ExtensionFactory for Pipeline {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PipelineExt {
            cache: self.cache.request(),
        })
    }
}

struct PipelineExt {
    cache: RequestCache,
}

#[async_trait::async_trait]
impl Extension for PipelineExt {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        self.cache.prepare_request(ctx, request, next).await
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
        deny_by_default::resolve(ctx, info, next).await
    }
}
