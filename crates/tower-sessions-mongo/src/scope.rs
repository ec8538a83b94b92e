//! [`SessionScopeLayer`]: one [`RequestScope`] per request, around tower-sessions'
//! `SessionManagerLayer`.

use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use session_store_core::{RequestScope, SessionBinding, StoreFailure};
use tower_layer::Layer;
use tower_service::Service;

/// Runs each request in its own [`RequestScope`], which the store needs to keep its
/// guarantees when requests on one session overlap: a request that only read never
/// writes its copy back, changes to different keys are all kept, a session logged out
/// meanwhile is not brought back, and with `serialize_requests` the request's lease is
/// released when the response is ready.
///
/// When a store operation of the request failed (logged once by the store, at `WARN`),
/// a `5xx` response (tower-sessions' bare `500` when saving failed, or a handler's own
/// `503`) becomes the store's failure response: `503` with `Retry-After: 5` and
/// `{"error":"session store unavailable"}` (or `500` with `{"error":"session store
/// error"}` for a set-up problem), see
/// [`StoreFailure`](session_store_core::StoreFailure). Other responses are left as the
/// handler made them.
///
/// Add it **outside** the session layer (in Axum, after it):
///
/// ```no_run
/// # use tower_sessions::SessionManagerLayer;
/// # use tower_sessions_mongo::{MongoSessionStore, SessionScopeLayer};
/// # fn app(store: MongoSessionStore) -> axum::Router {
/// axum::Router::new()
///     // .route(...)
///     .layer(SessionManagerLayer::new(store))
///     .layer(SessionScopeLayer::new())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionScopeLayer {
    _private: (),
}

impl SessionScopeLayer {
    /// The layer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for SessionScopeLayer {
    type Service = SessionScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionScope { inner }
    }
}

/// The service [`SessionScopeLayer`] makes.
#[derive(Debug, Clone)]
pub struct SessionScope<S> {
    inner: S,
}

impl<S, B, ResBody> Service<http::Request<B>> for SessionScope<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
    ResBody: From<&'static str> + Send,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let binding = req
            .extensions()
            .get::<SessionBinding>()
            .and_then(|b| b.0.clone());
        let scope = RequestScope::bound(binding);
        let response = scope.run(self.inner.call(req));
        Box::pin(async move {
            let response = response.await;
            scope.finish().await;
            Ok(match (response?, scope.failure()) {
                (res, Some(failure)) if res.status().is_server_error() => failure_response(failure),
                (res, _) => res,
            })
        })
    }
}

/// The response for a request whose store operation failed.
fn failure_response<ResBody: From<&'static str>>(failure: StoreFailure) -> http::Response<ResBody> {
    let mut res = http::Response::new(ResBody::from(failure.body()));
    *res.status_mut() = http::StatusCode::from_u16(failure.status())
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = res.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some(seconds) = failure.retry_after() {
        headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
    }
    res
}
