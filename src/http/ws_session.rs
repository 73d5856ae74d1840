//! Websocket operations re-resolve who is asking, one operation at a time: the socket only
//! keeps the token, so logout, session expiry, care-team changes and consent withdrawal
//! apply to the next operation on an open socket just as to the next HTTP request.
use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest,
};
use async_graphql::{Request, ServerError, ServerResult};

use crate::auth::service::resolve_viewer;
use crate::error::AppError;
use crate::graphql::context::RequestCtx;
use crate::identity::RequestMeta;
use crate::schema::{self, AppSchema};
use crate::state::AppState;

/// The schema websocket operations run on: the HTTP one, plus the extension that resolves
/// the viewer from the socket's token for each operation. A schema of its own, so that HTTP
/// requests do not pass through an extension that has nothing to do for them.
pub fn build_ws(state: &AppState) -> AppSchema {
    schema::build_with(state, |b| b.extension(WsViewer))
}

/// What `connection_init` leaves on the socket.
pub struct WsSession {
    pub token: String,
    pub meta: RequestMeta,
}

pub struct WsViewer;

impl ExtensionFactory for WsViewer {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(WsViewerExt)
    }
}

struct WsViewerExt;

fn refuse(e: AppError) -> ServerError {
    let err = async_graphql::Error::from(e);
    let mut se = ServerError::new(err.message, None);
    se.extensions = err.extensions;
    se
}

#[async_trait::async_trait]
impl Extension for WsViewerExt {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let (Some(ws), Some(state)) = (ctx.data_opt::<WsSession>(), ctx.data_opt::<AppState>())
        else {
            return next.run(ctx, request).await;
        };
        let viewer = resolve_viewer(state, &ws.token, ws.meta.clone())
            .await
            .map_err(refuse)?
            .filter(|v| !v.restricted)
            .ok_or_else(|| refuse(AppError::Unauthenticated))?;
        let request = schema::request_loaders(state).attach(request.data(RequestCtx {
            viewer: Some(viewer),
            meta: ws.meta.clone(),
        }));
        next.run(ctx, request).await
    }
}
