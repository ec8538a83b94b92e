//! What a session fairing puts in Rocket's managed state: the cookie settings and the
//! store. Loading at the guard and saving after the handler live here, once, for
//! every fairing.

use std::io::Cursor;
use std::sync::{Arc, Mutex};

use rocket::http::{ContentType, Cookie, SameSite, Status};
use rocket::request::Request;
use rocket::Response;
use session_store_core::{Error, RequestScope, SaveOutcome, SessionStore, StoreFailure};

use crate::request::{lock, scope, Action, Slot, State};

/// The default session cookie name.
pub const DEFAULT_COOKIE_NAME: &str = "sid";

/// Cookie values longer than this are not session ids: they are ignored without a
/// database round trip.
const MAX_ID_LEN: usize = 256;

/// The session cookie's attributes.
#[derive(Clone, Debug)]
pub(crate) struct CookieSettings {
    pub(crate) name: String,
    pub(crate) secure: bool,
    pub(crate) same_site: SameSite,
    pub(crate) domain: Option<String>,
    pub(crate) path: String,
    /// No `Max-Age`: the browser drops the cookie when it closes.
    pub(crate) session_cookie: bool,
}

impl Default for CookieSettings {
    fn default() -> Self {
        Self {
            name: DEFAULT_COOKIE_NAME.to_owned(),
            secure: true,
            same_site: SameSite::Lax,
            domain: None,
            path: "/".to_owned(),
            session_cookie: false,
        }
    }
}

/// The managed state: one per Rocket instance.
#[derive(Clone)]
pub(crate) struct Managed {
    pub(crate) store: SessionStore,
    pub(crate) cookie: CookieSettings,
}

impl std::fmt::Debug for Managed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Managed")
            .field("cookie", &self.cookie)
            .finish_non_exhaustive()
    }
}

impl Managed {
    /// Loads the request's session for the guard (once per request).
    pub(crate) async fn load(&self, req: &Request<'_>) -> Slot {
        let id = req
            .cookies()
            .get(&self.cookie.name)
            .map(|c| c.value().to_owned())
            .filter(|v| !v.is_empty() && v.len() <= MAX_ID_LEN);
        let Some(id) = id else {
            return Slot::Ready(Mutex::default());
        };
        match self.store.in_scope(scope(req)).load(&id).await {
            Ok(Some(session)) => Slot::Ready(Mutex::new(State {
                id: Some(id),
                data: session.data,
                action: Action::Keep,
            })),
            Ok(None) => Slot::Ready(Mutex::default()),
            // The store has logged the failure, once, at WARN.
            Err(e) => Slot::Failed(Arc::new(e)),
        }
    }

    /// Saves what the handler did, after it returned, and sets the cookie. A failed load
    /// or save makes the response the store's failure response (`503`, `Retry-After`,
    /// JSON body: [`StoreFailure`]), the same for both.
    pub(crate) async fn respond<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let cell = match req.local_cache(|| Slot::Unused) {
            Slot::Ready(cell) => cell,
            // The guard's load failed: Rocket answered with its catcher's page.
            Slot::Failed(e) => {
                if res.status().class().is_server_error() {
                    fail(res, StoreFailure::of(e));
                }
                scope(req).finish().await;
                return;
            }
            Slot::Unused => return,
        };
        let scope = scope(req);
        if res.status().class().is_server_error() {
            scope.finish().await;
            if let Some(failure) = scope.failure() {
                fail(res, failure);
            }
            return;
        }
        let state = std::mem::take(&mut *lock(cell));
        let persisted = self.persist(state, scope).await;
        scope.finish().await;
        match persisted {
            Ok(Some(cookie)) => res.adjoin_header(cookie),
            Ok(None) => {}
            // The store has logged the failure, once, at WARN.
            Err(e) => fail(res, StoreFailure::of(&e)),
        }
    }

    /// Writes what the request did; returns the `Set-Cookie` to send, if any.
    async fn persist(
        &self,
        state: State,
        scope: &RequestScope,
    ) -> Result<Option<Cookie<'static>>, Error> {
        let State { id, data, action } = state;
        let store = self.store.in_scope(scope);
        if action != Action::Keep {
            if let Some(old) = &id {
                store.destroy(old).await?;
            }
        }
        let had_session = id.is_some();
        if scope.session_ended() {
            // Logged out or revoked elsewhere while this request ran (its id rotation
            // found nothing to delete): nothing of it is stored under a new id.
            tracing::debug!("session ended during the request; not recreated");
            return Ok(Some(self.removal_cookie()));
        }
        match (action, id) {
            (Action::Destroy, _) => Ok(Some(self.removal_cookie())),
            (Action::Keep, Some(id)) => match store.save(&id, &data, None).await? {
                SaveOutcome::NotFound => {
                    tracing::debug!(
                        "session expired or was deleted during the request; not recreated"
                    );
                    Ok(Some(self.removal_cookie()))
                }
                _ => Ok(Some(self.cookie(id))),
            },
            _ if data.is_empty() => Ok(had_session.then(|| self.removal_cookie())),
            _ => {
                let id = store.create(&data, None).await?;
                Ok(Some(self.cookie(id.into_string())))
            }
        }
    }

    fn cookie(&self, id: String) -> Cookie<'static> {
        let mut cookie = self.base_cookie(id);
        if !self.cookie.session_cookie {
            cookie.set_max_age(
                rocket::time::Duration::try_from(self.store.ttl())
                    .unwrap_or(rocket::time::Duration::MAX),
            );
        }
        cookie
    }

    /// A cookie that deletes the session cookie: the same name, domain and path.
    fn removal_cookie(&self) -> Cookie<'static> {
        let mut cookie = self.base_cookie(String::new());
        cookie.make_removal();
        cookie
    }

    fn base_cookie(&self, value: String) -> Cookie<'static> {
        let settings = &self.cookie;
        let mut cookie = Cookie::build((settings.name.clone(), value))
            .http_only(true)
            .same_site(settings.same_site)
            .path(settings.path.clone())
            .secure(settings.secure)
            .build();
        if let Some(domain) = &settings.domain {
            cookie.set_domain(domain.clone());
        }
        cookie
    }
}

/// Makes `res` the store's failure response: its status, `Retry-After` and JSON body,
/// and no `Set-Cookie`.
fn fail(res: &mut Response<'_>, failure: StoreFailure) {
    res.set_status(Status::new(failure.status()));
    res.remove_header("Set-Cookie");
    if let Some(seconds) = failure.retry_after() {
        res.set_raw_header("Retry-After", seconds.to_string());
    }
    res.set_header(ContentType::JSON);
    let body = failure.body();
    res.set_sized_body(body.len(), Cursor::new(body));
}

/// Closes the store when Rocket shuts down (for fairings that own it).
pub(crate) async fn close_on_shutdown(rocket: &rocket::Rocket<rocket::Orbit>) {
    if let Some(managed) = rocket.state::<Managed>() {
        if let Err(e) = managed.store.close().await {
            tracing::warn!(error = %session_store_core::error_chain(&e), "closing the session store failed");
        }
    }
}
