//! Running a case: a fresh database, the server, helpers that say what differed.

use super::*;

/// What each generated test hands its case: the contract server binary and the MongoDB the
/// suite runs against. [`contract_tests!`](crate::contract_tests) makes it before calling the
/// case, so the live policy (skip, or fail under `CI`, without a MongoDB) is applied in one
/// place and no case repeats it.
#[derive(Debug, Clone)]
pub struct Target {
    bin: PathBuf,
    mongodb_uri: String,
    /// `CONTRACT_SESSION_CACHE` is set: every server runs with `SESSION_CACHE=1` (the
    /// suite run again with the cache on, against a replica set).
    session_cache: bool,
}

impl Target {
    /// The contract server binary at `bin` against `MONGODB_URI`, or `None` after the
    /// [`live`](crate::live) policy's skip line (under `CI` it panics instead).
    pub fn from_env(bin: impl AsRef<Path>) -> Option<Self> {
        Some(Self {
            bin: bin.as_ref().to_owned(),
            mongodb_uri: live::mongo_uri()?,
            session_cache: live::flag("CONTRACT_SESSION_CACHE"),
        })
    }

    /// Whether the servers run with the session cache on (`CONTRACT_SESSION_CACHE`).
    pub(crate) fn session_cache(&self) -> bool {
        self.session_cache
    }

    /// `env` after the suite's variables (a case's own setting wins).
    fn with_suite_env(&self, env: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let suite = self
            .session_cache
            .then(|| ("SESSION_CACHE", "1".to_owned()));
        suite.into_iter().chain(env.iter().cloned()).collect()
    }

    pub(crate) fn bin(&self) -> &Path {
        &self.bin
    }

    pub(crate) fn mongodb_uri(&self) -> &str {
        &self.mongodb_uri
    }
}

/// How a case runs its servers: the one options value every case builds (environment,
/// HTTPS, number of instances, a private mongod) instead of a runner per variation.
#[derive(Debug, Default, Clone)]
pub(crate) struct Case {
    pub(crate) env: Vec<(&'static str, String)>,
    pub(crate) https: Option<HttpsClient>,
    instances: Option<usize>,
    private_mongod: Option<String>,
    pub(crate) fd_limit: Option<u32>,
}

impl Case {
    /// One server over plain HTTP against the suite's MongoDB, nothing else set.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Sets the servers' variable `name` (see `CONTRACT_VARS`).
    pub(crate) fn env(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.env.push((name, value.into()));
        self
    }

    /// Reaches the servers over HTTPS with `client`; the server's own TLS variables go in
    /// [`env`](Self::env).
    pub(crate) fn https(mut self, client: HttpsClient) -> Self {
        self.https = Some(client);
        self
    }

    /// Runs the servers with at most `n` open files (`ulimit -n`), as a small container
    /// or a default systemd unit would.
    pub(crate) fn fd_limit(mut self, n: u32) -> Self {
        self.fd_limit = Some(n);
        self
    }

    /// Runs `n` servers on the one database (default 1).
    pub(crate) fn instances(mut self, n: usize) -> Self {
        self.instances = Some(n);
        self
    }

    /// Runs against the private mongod at `uri` instead of the suite's MongoDB; the
    /// database is not dropped (the mongod is thrown away).
    pub(crate) fn on_private_mongod(mut self, uri: String) -> Self {
        self.private_mongod = Some(uri);
        self
    }

    /// Starts the servers on a fresh database, runs `body`, then kills them and cleans
    /// up, also when `body` panics (whose panic is then re-raised).
    pub(crate) async fn run<F, Fut>(mut self, target: &Target, body: F)
    where
        F: FnOnce(Arc<Ctx>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.env = target.with_suite_env(&self.env);
        let uri = self
            .private_mongod
            .clone()
            .unwrap_or_else(|| target.mongodb_uri.clone());
        let test_db = TestDb::new(&uri, "contract")
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let mut servers = Vec::new();
        for _ in 0..self.instances.unwrap_or(1) {
            match ServerUnderTest::start(&target.bin, &uri, &test_db.name, &self).await {
                Ok(server) => servers.push(server),
                Err(e) => {
                    drop(servers);
                    test_db.drop_and_shutdown().await;
                    panic!("{e:#}");
                }
            }
        }
        let db = test_db.db();
        let ctx = Arc::new(Ctx {
            servers,
            sessions: db.collection(COLLECTION),
            db,
            target: target.clone(),
            uri,
            database: test_db.name.clone(),
            case: self.clone(),
        });
        let outcome = tokio::spawn(body(Arc::clone(&ctx))).await;
        for (i, server) in ctx.servers.iter().enumerate() {
            if outcome.is_err() {
                eprintln!(
                    "--- server under test {} #{i} (env {:?}) log tail ---\n{}",
                    target.bin.display(),
                    self.env,
                    server.log_tail(TAIL_LINES)
                );
            }
            server.kill();
        }
        drop(ctx);
        if self.private_mongod.is_some() {
            test_db.client.shutdown().await;
        } else {
            test_db.drop_and_shutdown().await;
        }
        if let Err(e) = outcome {
            match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("the case did not finish: {e}"),
            }
        }
    }
}

/// What one case works with: its servers, their database and sessions collection.
pub(crate) struct Ctx {
    pub(crate) servers: Vec<ServerUnderTest>,
    pub(crate) db: Database,
    pub(crate) sessions: Collection<Document>,
    target: Target,
    uri: String,
    database: String,
    case: Case,
}

impl Ctx {
    /// The first (usually the only) server.
    pub(crate) fn server(&self) -> &ServerUnderTest {
        &self.servers[0]
    }

    /// One more server on this case's database, with `env` instead of the case's
    /// variables (reached the same way, HTTP or HTTPS); killed when dropped.
    pub(crate) async fn start_server(&self, env: &[(&'static str, String)]) -> ServerUnderTest {
        let case = Case {
            env: self.target.with_suite_env(env),
            ..self.case.clone()
        };
        ServerUnderTest::start(&self.target.bin, &self.uri, &self.database, &case)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub(crate) async fn get(&self, path: &str, sid: Option<&str>) -> Reply {
        self.server()
            .get(path, sid)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub(crate) async fn post(&self, path: &str, sid: Option<&str>, body: &str) -> Reply {
        self.server()
            .post(path, sid, body)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub(crate) async fn count_docs(&self) -> u64 {
        self.sessions
            .count_documents(doc! {})
            .await
            .unwrap_or_else(|e| panic!("counting documents in `{COLLECTION}` failed: {e}"))
    }

    pub(crate) async fn docs(&self) -> Vec<Document> {
        let mut cursor = self
            .sessions
            .find(doc! {})
            .await
            .unwrap_or_else(|e| panic!("reading `{COLLECTION}` failed: {e}"));
        let mut docs = Vec::new();
        while cursor
            .advance()
            .await
            .unwrap_or_else(|e| panic!("reading `{COLLECTION}` failed: {e}"))
        {
            docs.push(
                cursor
                    .deserialize_current()
                    .unwrap_or_else(|e| panic!("reading `{COLLECTION}` failed: {e}")),
            );
        }
        docs
    }

    /// The one document in the collection; panics when there are none or several.
    pub(crate) async fn only_doc(&self, after: &str) -> Document {
        let mut docs = self.docs().await;
        assert!(
            docs.len() == 1,
            "after {after}: expected exactly one document in `{COLLECTION}`, found {}: {docs:?}",
            docs.len()
        );
        docs.remove(0)
    }

    pub(crate) async fn expect_docs(&self, expected: u64, after: &str) {
        let n = self.count_docs().await;
        if n != expected {
            panic!(
                "after {after}: expected {expected} document(s) in `{COLLECTION}`, found {n}: {:?}",
                self.docs().await
            );
        }
    }

    /// The collection's index specifications (none when it does not exist).
    pub(crate) async fn indexes(&self) -> Vec<Document> {
        let reply = match self
            .db
            .run_command(doc! { "listIndexes": COLLECTION })
            .await
        {
            Ok(reply) => reply,
            Err(e) if matches!(&*e.kind, ErrorKind::Command(c) if c.code == 26) => return vec![],
            Err(e) => panic!("listIndexes on `{COLLECTION}` failed: {e}"),
        };
        reply
            .get_document("cursor")
            .and_then(|c| c.get_array("firstBatch"))
            .unwrap_or_else(|e| panic!("unexpected listIndexes reply {reply}: {e}"))
            .iter()
            .filter_map(|b| b.as_document().cloned())
            .collect()
    }

    /// `GET /counter` expecting `200 {"count": expected}`; returns the session id to send
    /// next. Without `sid`, a new session cookie is required and checked; with one, the id
    /// must not change.
    pub(crate) async fn counter(&self, sid: Option<&str>, expected: u64) -> String {
        let r = self.get("/counter", sid).await;
        let what = format!("GET /counter (expecting count {expected})");
        expect_reply(&r, 200, &json!({ "count": expected }), &what);
        match (sid, r.sid()) {
            (None, None) => panic!(
                "{what} without a cookie: expected a Set-Cookie for `{COOKIE_NAME}` that \
                 starts the session, got {r}"
            ),
            (None, Some(cookie)) => session_cookie(cookie, &what, self.server().https),
            (Some(old), Some(cookie)) => {
                assert!(
                    cookie.value == old && !cookie.removes_at(OffsetDateTime::now_utc()),
                    "{what}: the session cookie changed without a login (sent {old}, got \
                     Set-Cookie {cookie}); only POST /login rotates the id"
                );
                old.to_owned()
            }
            (Some(old), None) => old.to_owned(),
        }
    }

    /// `POST /login {"user": user}` expecting 200 and a rotated id; returns the new id.
    pub(crate) async fn login(&self, sid: Option<&str>, user: &str) -> String {
        let r = self
            .post("/login", sid, &json!({ "user": user }).to_string())
            .await;
        let what = format!("POST /login {{\"user\":\"{user}\"}}");
        expect_reply(&r, 200, &json!({ "user": user }), &what);
        let cookie = r.sid().unwrap_or_else(|| {
            panic!("{what}: expected a Set-Cookie for `{COOKIE_NAME}` with the rotated id, got {r}")
        });
        let new = session_cookie(cookie, &what, self.server().https);
        if let Some(old) = sid {
            assert_ne!(
                new, old,
                "{what}: the session id was not rotated (Set-Cookie {cookie}); the contract \
                 rotates it at login"
            );
        }
        new
    }

    /// `GET /counter` while MongoDB is out: `503 {"error":"session store unavailable"}`,
    /// `Retry-After`, no `Set-Cookie`.
    pub(crate) async fn expect_unavailable(&self, sid: &str, while_: &str) {
        let r = self.get("/counter", Some(sid)).await;
        let what = format!("GET /counter while {while_}");
        expect_reply(
            &r,
            503,
            &json!({ "error": "session store unavailable" }),
            &what,
        );
        assert!(
            r.header(RETRY_AFTER.as_str())
                .is_some_and(|v| !v.trim().is_empty()),
            "{what}: expected a Retry-After header on the 503, got {r}"
        );
        assert_eq!(
            r.set_cookie_count(),
            0,
            "{what}: a 503 must not send Set-Cookie, got {r}"
        );
        let r = self.get("/health", None).await;
        expect_reply(
            &r,
            200,
            &json!({ "ok": true }),
            &format!("GET /health while {while_}"),
        );
    }

    /// `GET /counter` once MongoDB is back, retried while it answers 503; expects the
    /// count `expected` (more only by the number of 503s whose write may have landed).
    /// Returns the id to send next and the count.
    pub(crate) async fn counter_after_outage(
        &self,
        sid: &str,
        expected: u64,
        after: &str,
    ) -> (String, u64) {
        let deadline = Instant::now() + RECOVERY_TIMEOUT;
        let mut unavailable = 0;
        loop {
            let r = self.get("/counter", Some(sid)).await;
            if r.status == StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline {
                unavailable += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            let what = format!("GET /counter {after}");
            let count = match (
                r.status.as_u16(),
                r.json.as_ref().and_then(|j| j["count"].as_u64()),
            ) {
                (200, Some(count)) => count,
                _ => panic!(
                    "{what}: expected 200 {{\"count\":{expected}}} (the server serves sessions \
                     again without a restart), got {r} after {unavailable} answer(s) 503 over \
                     {RECOVERY_TIMEOUT:?}"
                ),
            };
            assert!(
                (expected..=expected + unavailable).contains(&count),
                "{what}: expected count {expected} (every acknowledged increment kept), got \
                 {count} after {unavailable} unacknowledged attempt(s): {r}"
            );
            let next = match r.sid() {
                Some(cookie) if cookie.value != sid => panic!(
                    "{what}: the session id changed (Set-Cookie {cookie}); the session must \
                     survive the outage"
                ),
                _ => sid.to_owned(),
            };
            return (next, count);
        }
    }
}

/// Asserts status and JSON body, saying what differed.
pub(crate) fn expect_reply(r: &Reply, status: u16, body: &Value, what: &str) {
    assert!(
        r.status.as_u16() == status && r.json.as_ref() == Some(body),
        "{what}: expected {status} {body}, got {r}"
    );
}

pub(crate) fn expect_no_set_cookie(r: &Reply, what: &str) {
    assert_eq!(
        r.set_cookie_count(),
        0,
        "{what}: expected no Set-Cookie, got {r}"
    );
}

/// Checks a newly issued session cookie against the contract (with `Secure` exactly when
/// the server was reached over HTTPS, `https`); returns its value.
pub(crate) fn session_cookie(cookie: &SetCookie, what: &str, https: bool) -> String {
    let problems: Vec<&str> = [
        (!cookie.has("HttpOnly"), "no HttpOnly"),
        (
            !cookie
                .attribute("SameSite")
                .flatten()
                .is_some_and(|v| v.eq_ignore_ascii_case("Lax")),
            "SameSite is not Lax",
        ),
        (cookie.attribute("Path") != Some(Some("/")), "Path is not /"),
        (cookie.has("Secure") && !https, "Secure over plain HTTP"),
        (!cookie.has("Secure") && https, "no Secure over HTTPS"),
        (
            cookie.value.len() < 22,
            "the value is shorter than 22 characters",
        ),
        (
            !cookie.value.bytes().all(is_cookie_octet),
            "the value has characters RFC 6265 does not allow in a cookie value",
        ),
        (
            cookie.removes_at(OffsetDateTime::now_utc()),
            "it deletes the cookie",
        ),
    ]
    .into_iter()
    .filter_map(|(bad, why)| bad.then_some(why))
    .collect();
    assert!(
        problems.is_empty(),
        "{what}: the session cookie breaks the contract ({}): Set-Cookie {cookie}; expected \
         `{COOKIE_NAME}=<at least 22 cookie-safe characters>; HttpOnly; SameSite=Lax; Path=/` \
         with Secure exactly when served over HTTPS",
        problems.join(", ")
    );
    cookie.value.clone()
}

/// RFC 6265 section 4.1.1 `cookie-octet`: printable US-ASCII except space, `"`, `,`,
/// `;` and `\\`. The value is opaque: the adapter may sign, encrypt or percent-encode
/// the id (actix-session does), so only the cookie grammar is checked, not an alphabet.
pub(crate) fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

pub(crate) fn numeric(b: Option<&Bson>) -> Option<f64> {
    match b? {
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        Bson::Double(n) => Some(*n),
        _ => None,
    }
}

pub(crate) fn now_millis() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since.as_millis()).expect("a sane clock")
}

/// A session id no server issued: `len` random characters from `alphabet`, or (`len`
/// 0) 16 random bytes in unpadded base64url, the shape many adapters issue.
pub(crate) fn forged_id(alphabet: &[u8], len: usize) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let state = RandomState::new();
    let random = |i: usize| state.hash_one(i);
    if len > 0 {
        return (0..len)
            .map(|i| char::from(alphabet[(random(i) % alphabet.len() as u64) as usize]))
            .collect();
    }
    let bytes: Vec<u8> = (0..16).map(|i| random(i).to_le_bytes()[0]).collect();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(B64[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}
