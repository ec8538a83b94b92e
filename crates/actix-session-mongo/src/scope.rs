//! [`session_scope`]: one [`RequestScope`] per request, around actix-session's
//! `SessionMiddleware`.

use std::future::Future;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, HttpResponse};
use session_store_core::{RequestScope, SessionBinding, StoreFailure};

/// Middleware (for [`actix_web::middleware::from_fn`]) that runs each request in its own
/// [`RequestScope`], which the store needs to keep its guarantees when requests on one
/// session overlap: a request that only read never writes its copy back, changes to
/// different keys are all kept, a session logged out meanwhile is not brought back, and
/// with `serialize_requests` the request's lease is released when the response is ready.
///
/// When a store operation of the request failed (logged once by the store, at `WARN`),
/// actix-session's bare `500` (or a handler's `5xx`) becomes the store's failure
/// response: `503` with `Retry-After: 5` and `{"error":"session store unavailable"}`, or
/// `500` with `{"error":"session store error"}` for a set-up problem (see
/// [`StoreFailure`]).
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
/// (if any), releases what the scope holds once the response is ready, and answers a
/// failed store operation with [`StoreFailure`]'s response: the one body of
/// [`session_scope`] and [`ScopedSessionMiddleware`](crate::ScopedSessionMiddleware).
pub(crate) async fn in_request_scope<B, F>(
    req: ServiceRequest,
    call: impl FnOnce(ServiceRequest) -> F,
) -> Result<ServiceResponse<B>, actix_web::Error>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
{
    let binding = req
        .extensions()
        .get::<SessionBinding>()
        .and_then(|b| b.0.clone());
    let scope = RequestScope::bound(binding);
    let response = scope.run(call(req)).await;
    scope.finish().await;
    match (scope.failure(), response) {
        // actix-session fails the request (a bare `500`) when loading or saving failed.
        (Some(failure), Err(_)) => Err(failure_error(failure)),
        (Some(failure), Ok(res)) if res.status().is_server_error() => Err(failure_error(failure)),
        (_, response) => response,
    }
}

/// The store's failure response, as the error Actix renders.
fn failure_error(failure: StoreFailure) -> actix_web::Error {
    let status =
        StatusCode::from_u16(failure.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = HttpResponse::build(status);
    res.content_type("application/json");
    if let Some(seconds) = failure.retry_after() {
        res.insert_header((header::RETRY_AFTER, seconds.to_string()));
    }
    // The store has logged the cause; the error's text is what Actix's own log shows.
    let text = match failure {
        StoreFailure::Unavailable => "the session store is unavailable (logged above)",
        _ => "the session store failed (logged above)",
    };
    InternalError::from_response(text, res.body(failure.body())).into()
}
