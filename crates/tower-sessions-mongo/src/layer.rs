//! [`SessionLayer`]: the one layer an Axum application adds, the request scope and
//! tower-sessions' session manager in the order the store's guarantees need.

use std::borrow::Cow;

use tower_layer::Layer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

use crate::{MongoSessionStore, SessionScope, SessionScopeLayer};

/// Server-side sessions for an Axum router in one `.layer(..)`: tower-sessions'
/// `SessionManagerLayer` over this store, inside a [`SessionScopeLayer`], so every request
/// runs in its own request scope (a read never writes its stale copy back, changes to
/// different keys are all kept, a logout is final, `serialize_requests` holds). The
/// session manager's cookie options are set here:
///
/// | option | default |
/// | --- | --- |
/// | [`with_name`](Self::with_name) | `id` (tower-sessions') |
/// | [`with_expiry`](Self::with_expiry) | a browser-session cookie; the store's TTL |
/// | [`with_same_site`](Self::with_same_site) | `Strict` |
/// | [`with_secure`](Self::with_secure) | `true` |
/// | [`with_http_only`](Self::with_http_only) | `true` |
/// | [`with_path`](Self::with_path) | `/` |
/// | [`with_domain`](Self::with_domain) | none |
/// | [`with_always_save`](Self::with_always_save) | `false` |
///
/// For signed or private cookies, stack [`SessionScopeLayer`] outside your own
/// `SessionManagerLayer` instead.
///
/// ```no_run
/// use tower_sessions::Expiry;
/// use tower_sessions_mongo::{MongoSessionStore, SessionLayer};
/// # fn app(store: MongoSessionStore) -> axum::Router {
/// axum::Router::new()
///     // .route(...)
///     .layer(
///         SessionLayer::new(store)
///             .with_name("sid")
///             .with_expiry(Expiry::OnInactivity(time::Duration::hours(12))),
///     )
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SessionLayer {
    manager: SessionManagerLayer<MongoSessionStore>,
}

impl SessionLayer {
    /// Sessions stored in `store`, with tower-sessions' cookie defaults (see the table).
    #[must_use]
    pub fn new(store: MongoSessionStore) -> Self {
        Self {
            manager: SessionManagerLayer::new(store),
        }
    }

    /// The session cookie's name.
    #[must_use]
    pub fn with_name(self, name: impl Into<Cow<'static, str>>) -> Self {
        self.map(|m| m.with_name(name))
    }

    /// When sessions expire: at the end of the browser session, after a period of
    /// inactivity, or at a fixed time.
    #[must_use]
    pub fn with_expiry(self, expiry: Expiry) -> Self {
        self.map(|m| m.with_expiry(expiry))
    }

    /// The cookie's `SameSite` attribute.
    #[must_use]
    pub fn with_same_site(self, same_site: SameSite) -> Self {
        self.map(|m| m.with_same_site(same_site))
    }

    /// The cookie's `Secure` attribute (sent over HTTPS only).
    #[must_use]
    pub fn with_secure(self, secure: bool) -> Self {
        self.map(|m| m.with_secure(secure))
    }

    /// The cookie's `HttpOnly` attribute (hidden from scripts).
    #[must_use]
    pub fn with_http_only(self, http_only: bool) -> Self {
        self.map(|m| m.with_http_only(http_only))
    }

    /// The cookie's `Path`.
    #[must_use]
    pub fn with_path(self, path: impl Into<Cow<'static, str>>) -> Self {
        self.map(|m| m.with_path(path))
    }

    /// The cookie's `Domain`.
    #[must_use]
    pub fn with_domain(self, domain: impl Into<Cow<'static, str>>) -> Self {
        self.map(|m| m.with_domain(domain))
    }

    /// Saves the session on every request, also when the handler did not change it (the
    /// store's `touch_after` then decides whether anything is written).
    #[must_use]
    pub fn with_always_save(self, always_save: bool) -> Self {
        self.map(|m| m.with_always_save(always_save))
    }

    fn map(
        self,
        f: impl FnOnce(SessionManagerLayer<MongoSessionStore>) -> SessionManagerLayer<MongoSessionStore>,
    ) -> Self {
        Self {
            manager: f(self.manager),
        }
    }
}

impl<S> Layer<S> for SessionLayer
where
    SessionManagerLayer<MongoSessionStore>: Layer<S>,
{
    type Service = SessionScope<<SessionManagerLayer<MongoSessionStore> as Layer<S>>::Service>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionScopeLayer::new().layer(self.manager.layer(inner))
    }
}
