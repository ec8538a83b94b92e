//! [`session_scope`]: one [`RequestScope`] per request, around actix-session's
//! `SessionMiddleware`.

use std::future::Future;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::HttpMessage as _;
use session_store_core::{RequestScope, SessionBinding};

/// Middleware (for [`actix_web::middleware::from_fn`]) that runs each request in its own
/// [`RequestScope`], which the store needs to keep its guarantees when requests on one
/// session overlap: a request that only read never writes its copy back, changes to
/// different keys are all kept, a session logged out meanwhile is not brought back, and
/// with `serialize_requests` the request's lease is released when the response is ready.
///
/// Wrap it **outside** `SessionMiddleware` (in Actix, the later `.wrap` is the outer one):
///
/// ```no_run
/// # use actix_session::SessionMiddleware;
/// # use actix_web::{cookie::Key, middleware::from_fn, App};
/// # use actix_session_mongo::{session_scope, MongoSessionStore};
/// # fn app(store: MongoSessionStore, key: Key) {
/// let app = App::new()
///     .wrap(SessionMiddleware::new(store, key))
///     .wrap(from_fn(session_scope));
/// # }
/// ```
///
/// # Errors
///
/// Whatever the wrapped service returns.
pub async fn session_scope(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    in_request_scope(req, |req| next.call(req)).await
}

/// Runs `call(req)` in a new [`RequestScope`] bound to the request's [`SessionBinding`]
/// (if any), and releases what the scope holds once the response is ready: the one body
/// of [`session_scope`] and [`ScopedSessionMiddleware`](crate::ScopedSessionMiddleware).
pub(crate) async fn in_request_scope<F: Future>(
    req: ServiceRequest,
    call: impl FnOnce(ServiceRequest) -> F,
) -> F::Output {
    let binding = req
        .extensions()
        .get::<SessionBinding>()
        .and_then(|b| b.0.clone());
    let scope = RequestScope::bound(binding);
    let response = scope.run(call(req)).await;
    scope.finish().await;
    response
}
