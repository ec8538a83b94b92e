//! [`SessionFairing`]: attaches a built store to Rocket, with the cookie's options.

use rocket::fairing::{self, Fairing, Info, Kind};
use rocket::http::SameSite;
use rocket::request::Request;
use rocket::{Build, Response, Rocket};
use session_store_core::SessionStore;

use crate::managed::{CookieSettings, Managed};

/// The fairing that puts a built store at the [`Session`](crate::Session) guard's
/// disposal and saves sessions after each request; attach one per Rocket instance. To
/// configure everything from `Rocket.toml` instead, attach [`init()`](crate::init).
pub struct SessionFairing {
    managed: Managed,
}

impl std::fmt::Debug for SessionFairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionFairing")
            .field("store", &self.managed.store)
            .field("cookie", &self.managed.cookie)
            .finish()
    }
}

impl SessionFairing {
    /// Sessions kept in a built [`SessionStore`], with the defaults in the
    /// [options table](crate#options).
    #[must_use]
    pub fn new(store: SessionStore) -> Self {
        Self {
            managed: Managed {
                store,
                cookie: CookieSettings::default(),
            },
        }
    }

    /// The session cookie's name (default `sid`).
    #[must_use]
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.managed.cookie.name = name.into();
        self
    }

    /// The cookie's `Secure` flag (default `true`).
    #[must_use]
    pub fn secure(mut self, secure: bool) -> Self {
        self.managed.cookie.secure = secure;
        self
    }

    /// The cookie's `SameSite` attribute (default `Lax`).
    #[must_use]
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.managed.cookie.same_site = same_site;
        self
    }

    /// The cookie's `Domain` attribute (default: none, the cookie goes back only to the
    /// host that set it).
    #[must_use]
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.managed.cookie.domain = Some(domain.into());
        self
    }

    /// The cookie's `Path` attribute (default `/`).
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.managed.cookie.path = path.into();
        self
    }

    /// A browser-session cookie: no `Max-Age`, so the browser forgets the id when it
    /// closes (the stored session still expires after the store's `ttl`). Default:
    /// `false` (`Max-Age` = the store's `ttl`).
    #[must_use]
    pub fn session_cookie(mut self, session_cookie: bool) -> Self {
        self.managed.cookie.session_cookie = session_cookie;
        self
    }

    /// The core store, for `count`, `all`, `clear` and `close`.
    #[must_use]
    pub fn store(&self) -> &SessionStore {
        &self.managed.store
    }
}

#[rocket::async_trait]
impl Fairing for SessionFairing {
    fn info(&self) -> Info {
        Info {
            name: "server-side sessions",
            kind: Kind::Ignite | Kind::Response | Kind::Singleton,
        }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> fairing::Result {
        Ok(rocket.manage(self.managed.clone()))
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        self.managed.respond(req, res).await;
    }
}
