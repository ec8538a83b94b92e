//! [`init()`]: the session fairing configured from Rocket's figment (`Rocket.toml`,
//! `ROCKET_SESSIONS`), as `rocket_db_pools` configures its pools.

use std::time::Duration;

use rocket::fairing::{self, Fairing, Info, Kind};
use rocket::http::SameSite;
use rocket::request::Request;
use rocket::serde::Deserialize;
use rocket::{Build, Orbit, Response, Rocket};
use session_store_core::SessionStore;
use session_store_mongo::MongoBackend;

use crate::managed::{close_on_shutdown, CookieSettings, Managed};

/// The figment key the configuration is read from: `[default.sessions]` in
/// `Rocket.toml`.
pub const CONFIG_KEY: &str = "sessions";

/// The `sessions` table. Every key but `uri` is optional; unknown keys are an error, so
/// a misspelt option fails launch instead of being ignored.
#[derive(Debug, Deserialize)]
#[serde(crate = "rocket::serde", deny_unknown_fields)]
struct Config {
    uri: String,
    database: Option<String>,
    collection: Option<String>,
    ttl_secs: Option<u64>,
    touch_after_secs: Option<u64>,
    owner_from_key: Option<String>,
    cookie_name: Option<String>,
    secure: Option<bool>,
    same_site: Option<SameSiteName>,
    domain: Option<String>,
    path: Option<String>,
    session_cookie: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(crate = "rocket::serde", rename_all = "lowercase")]
enum SameSiteName {
    Strict,
    Lax,
    None,
}

impl From<SameSiteName> for SameSite {
    fn from(name: SameSiteName) -> Self {
        match name {
            SameSiteName::Strict => Self::Strict,
            SameSiteName::Lax => Self::Lax,
            SameSiteName::None => Self::None,
        }
    }
}

/// Sessions on MongoDB configured from Rocket's configuration: attach
/// `rocket_session_mongo::init()` and add a `sessions` table.
///
/// ```toml
/// [default.sessions]
/// uri = "mongodb://127.0.0.1:27017/app"  # required
/// # database = "app"          # default: the URI's path, else "sessions"
/// # collection = "sessions"
/// # ttl_secs = 1209600        # 14 days: idle lifetime, also the cookie's Max-Age
/// # touch_after_secs = 0      # seconds an unchanged session is not rewritten
/// # owner_from_key = "user"   # the session key naming its owner (see below)
/// # cookie_name = "sid"
/// # secure = true
/// # same_site = "lax"         # "strict", "lax" or "none"
/// # domain = "example.com"    # default: none (host-only cookie)
/// # path = "/"
/// # session_cookie = false    # true: no Max-Age, the browser forgets the id on close
/// ```
///
/// The environment overrides it as for any Rocket option, e.g.
/// `ROCKET_SESSIONS='{uri="mongodb://db:27017/app"}'`. At ignite the fairing connects
/// (checking the connection and creating the TTL index); a missing or invalid option or
/// an unreachable MongoDB aborts launch with the reason in the log. The store is closed
/// at shutdown. `owner_from_key` names the session key that holds the owner (the user id
/// the app stores at login): "log out everywhere" then reads the sessions stored without
/// an owner (visitors', or from before owners) to find the user's, and reports them
/// checked; without it they are counted as unchecked
/// ([`SessionStoreBuilder::owner_from`](session_store_core::SessionStoreBuilder::owner_from)).
/// Owners work with it as they are (`Session::set_owner`, the user's
/// sessions listed and revoked; owners stored as given). For options the table does not
/// have (encryption, an owner key, a custom `owner_from`, serialized requests), build the store
/// yourself and attach
/// [`SessionFairing`](crate::SessionFairing).
#[must_use]
pub fn init() -> Initializer {
    Initializer { _private: () }
}

/// The fairing [`init()`] returns.
#[derive(Debug)]
pub struct Initializer {
    _private: (),
}

impl Initializer {
    async fn managed(rocket: &Rocket<Build>) -> Result<Managed, String> {
        if !rocket.figment().contains(CONFIG_KEY) {
            return Err(format!(
                "no `{CONFIG_KEY}` configuration: add `[default.{CONFIG_KEY}]` with \
                 `uri = \"mongodb://...\"` to Rocket.toml, or set ROCKET_SESSIONS"
            ));
        }
        let config: Config = rocket
            .figment()
            .extract_inner(CONFIG_KEY)
            .map_err(|e| format!("the `{CONFIG_KEY}` configuration is invalid: {e}"))?;
        let mut backend = MongoBackend::builder().uri(&config.uri);
        if let Some(database) = &config.database {
            backend = backend.database(database);
        }
        if let Some(collection) = &config.collection {
            backend = backend.collection(collection);
        }
        let backend = backend.build().await.map_err(|e| {
            format!(
                "cannot connect the session store: {}",
                session_store_core::error_chain(&e)
            )
        })?;
        let mut store = SessionStore::builder(backend);
        if let Some(secs) = config.ttl_secs {
            store = store.ttl(Duration::from_secs(secs));
        }
        if let Some(secs) = config.touch_after_secs {
            store = store.touch_after(Duration::from_secs(secs));
        }
        if let Some(key) = config.owner_from_key {
            store = store.owner_from(move |data| data.get(&key)?.as_str().map(str::to_owned));
        }
        let store = store.build().await.map_err(|e| {
            format!(
                "cannot start the session store: {}",
                session_store_core::error_chain(&e)
            )
        })?;
        let defaults = CookieSettings::default();
        Ok(Managed {
            store,
            cookie: CookieSettings {
                name: config.cookie_name.unwrap_or(defaults.name),
                secure: config.secure.unwrap_or(defaults.secure),
                same_site: config.same_site.map_or(defaults.same_site, SameSite::from),
                domain: config.domain,
                path: config.path.unwrap_or(defaults.path),
                session_cookie: config.session_cookie.unwrap_or(defaults.session_cookie),
            },
        })
    }
}

#[rocket::async_trait]
impl Fairing for Initializer {
    fn info(&self) -> Info {
        Info {
            name: "server-side sessions (from configuration)",
            kind: Kind::Ignite | Kind::Response | Kind::Shutdown | Kind::Singleton,
        }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> fairing::Result {
        match Self::managed(&rocket).await {
            Ok(managed) => Ok(rocket.manage(managed)),
            Err(reason) => {
                tracing::error!("{reason}");
                Err(rocket)
            }
        }
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        if let Some(managed) = req.rocket().state::<Managed>() {
            managed.respond(req, res).await;
        }
    }

    async fn on_shutdown(&self, rocket: &Rocket<Orbit>) {
        close_on_shutdown(rocket).await;
    }
}
