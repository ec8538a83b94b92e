//! [`ScopedSessionMiddleware`]: the one middleware an Actix Web application wraps,
//! actix-session's `SessionMiddleware` inside the store's request scope.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::scope::in_request_scope;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};

/// A boxed future of an Actix service (services run on one thread: not `Send`).
type Local<T> = Pin<Box<dyn Future<Output = T>>>;

/// actix-session's `SessionMiddleware` (or any middleware that loads and saves sessions
/// through this store) inside the store's request scope, in one `.wrap(..)`: every
/// request runs in its own request scope, so a read never writes its stale copy back,
/// changes to different keys are all kept, a logout is final and `serialize_requests`
/// holds. A failed store operation is answered with the store's failure response (`503`,
/// `Retry-After: 5`, a JSON body; see [`session_scope`](crate::session_scope)) instead
/// of actix-session's bare `500`. It does what [`session_scope`](crate::session_scope)
/// wrapped outside the session middleware does, without the order to get right.
///
/// ```no_run
/// use actix_session::SessionMiddleware;
/// use actix_session_mongo::{MongoSessionStore, ScopedSessionMiddleware};
/// use actix_web::{cookie::Key, App};
/// # fn app(store: MongoSessionStore, key: Key) {
/// let app = App::new().wrap(ScopedSessionMiddleware::new(
///     SessionMiddleware::builder(store, key)
///         .cookie_name("sid".into())
///         .build(),
/// ));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ScopedSessionMiddleware<M> {
    sessions: M,
}

impl<M> ScopedSessionMiddleware<M> {
    /// `sessions` (a `SessionMiddleware` over this store) inside the request scope.
    pub fn new(sessions: M) -> Self {
        Self { sessions }
    }
}

impl<S, M, B> Transform<S, ServiceRequest> for ScopedSessionMiddleware<M>
where
    M: Transform<S, ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    M::Future: 'static,
    M::Transform: 'static,
    B: 'static,
{
    type Response = M::Response;
    type Error = M::Error;
    type Transform = ScopedSessionService<M::Transform>;
    type InitError = M::InitError;
    type Future = Local<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let sessions = self.sessions.new_transform(service);
        Box::pin(async move {
            Ok(ScopedSessionService {
                inner: Rc::new(sessions.await?),
            })
        })
    }
}

/// The service [`ScopedSessionMiddleware`] makes.
#[derive(Debug)]
pub struct ScopedSessionService<S> {
    inner: Rc<S>,
}

impl<S, B> Service<ServiceRequest> for ScopedSessionService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Local<Result<S::Response, S::Error>>;

    forward_ready!(inner);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let inner = Rc::clone(&self.inner);
        Box::pin(in_request_scope(req, move |req| inner.call(req)))
    }
}
