//! [`SessionScopeLayer`]: one [`RequestScope`] per request, around tower-sessions'
//! `SessionManagerLayer`.

use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use session_store_core::{RequestScope, SessionBinding};
use tower_layer::Layer;
use tower_service::Service;

/// Runs each request in its own [`RequestScope`], which the store needs to keep its
/// guarantees when requests on one session overlap: a request that only read never
/// writes its copy back, changes to different keys are all kept, a session logged out
/// meanwhile is not brought back, and with `serialize_requests` the request's lease is
/// released when the response is ready.
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

impl<S, B> Service<http::Request<B>> for SessionScope<S>
where
    S: Service<http::Request<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send,
    S::Error: Send,
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
            response
        })
    }
}
