//! The contract's Concurrency section, and `PUT /data/{key}` / `GET /data`: parallel
//! clients against two server processes sharing one collection.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};

use super::{expect_no_set_cookie, expect_reply, Case, Ctx, Reply, ServerUnderTest, Target};

/// Two instances of one contract server on one database, and the collection they share.
struct Pair {
    ctx: Arc<Ctx>,
    sessions: mongodb::Collection<mongodb::bson::Document>,
}

impl Pair {
    /// Instance `i % 2`.
    fn at(&self, i: usize) -> &ServerUnderTest {
        &self.ctx.servers[i % 2]
    }

    async fn send(
        &self,
        i: usize,
        method: Method,
        path: &str,
        sid: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        self.at(i)
            .request(method, path, sid, body)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    async fn get(&self, i: usize, path: &str, sid: Option<&str>) -> Reply {
        self.send(i, Method::GET, path, sid, None).await
    }

    async fn post(&self, i: usize, path: &str, sid: Option<&str>, body: &str) -> Reply {
        self.send(i, Method::POST, path, sid, Some(body)).await
    }

    async fn put_data(&self, i: usize, sid: Option<&str>, key: &str, value: &Value) -> Reply {
        let body = json!({ "value": value }).to_string();
        self.send(i, Method::PUT, &format!("/data/{key}"), sid, Some(&body))
            .await
    }

    /// `GET /counter` on instance `i` expecting 200; returns the count.
    async fn counter(&self, i: usize, sid: &str) -> u64 {
        let r = self.get(i, "/counter", Some(sid)).await;
        match (
            r.status.as_u16(),
            r.json.as_ref().and_then(|j| j["count"].as_u64()),
        ) {
            (200, Some(n)) => n,
            _ => panic!(
                "GET /counter on instance {}: expected 200 {{\"count\":N}}, got {r}",
                i % 2
            ),
        }
    }

    /// A new session on instance 0 (one `GET /counter`); returns its id.
    async fn new_session(&self) -> String {
        let r = self.get(0, "/counter", None).await;
        expect_reply(
            &r,
            200,
            &json!({ "count": 1 }),
            "GET /counter without a cookie",
        );
        r.sid()
            .unwrap_or_else(|| panic!("GET /counter without a cookie set no cookie: {r}"))
            .value
            .clone()
    }

    /// `POST /login` on instance `i`; returns the rotated id.
    async fn login(&self, i: usize, sid: &str, user: &str) -> String {
        let r = self
            .post(i, "/login", Some(sid), &json!({ "user": user }).to_string())
            .await;
        expect_reply(&r, 200, &json!({ "user": user }), "POST /login");
        r.sid()
            .unwrap_or_else(|| panic!("POST /login set no cookie: {r}"))
            .value
            .clone()
    }
}

/// Runs `body` with two instances of the target started per `case` on one database.
async fn run_pair<F, Fut>(t: &Target, case: Case, body: F)
where
    F: FnOnce(Arc<Pair>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    case.instances(2)
        .run(t, |ctx| {
            let sessions = ctx.sessions.clone();
            body(Arc::new(Pair { ctx, sessions }))
        })
        .await;
}

/// `PUT /data/{key}` stores any JSON value under a key without rotating the id;
/// `GET /data` lists them (`{}` without a session, creating none); bad keys and bodies
/// are `400`, never `500`.
pub async fn data_routes(t: &Target) {
    run_pair(t, Case::new(), |p| async move {
        let r = p.get(0, "/data", None).await;
        expect_reply(&r, 200, &json!({}), "GET /data without a session");
        expect_no_set_cookie(&r, "GET /data without a session");

        let value = json!({"list": [1, "two", null], "ok": true});
        let r = p.put_data(0, None, "prefs", &value).await;
        expect_reply(
            &r,
            200,
            &json!({"key": "prefs", "value": value}),
            "PUT /data/prefs",
        );
        let sid = r
            .sid()
            .unwrap_or_else(|| panic!("PUT /data without a session set no cookie: {r}"))
            .value
            .clone();
        let r = p.put_data(1, Some(&sid), "theme_2", &json!("dark")).await;
        expect_reply(
            &r,
            200,
            &json!({"key": "theme_2", "value": "dark"}),
            "PUT /data/theme_2",
        );
        if let Some(c) = r.sid() {
            assert_eq!(c.value, sid, "PUT /data rotated the session id: {r}");
        }
        for i in 0..2 {
            let r = p.get(i, "/data", Some(&sid)).await;
            expect_reply(
                &r,
                200,
                &json!({"prefs": value, "theme_2": "dark"}),
                "GET /data",
            );
        }
        // Counter and user are not data keys.
        assert_eq!(p.counter(0, &sid).await, 1);
        let r = p.get(1, "/data", Some(&sid)).await;
        expect_reply(
            &r,
            200,
            &json!({"prefs": value, "theme_2": "dark"}),
            "GET /data after GET /counter",
        );

        let long = "a".repeat(33);
        for key in ["Upper", "1abc", "user", "count", "with-dash", long.as_str()] {
            let r = p.put_data(0, Some(&sid), key, &json!(1)).await;
            assert_eq!(
                r.status.as_u16(),
                400,
                "PUT /data/{key}: expected 400, got {r}"
            );
            assert!(
                r.json.is_some(),
                "PUT /data/{key}: the 400 should be JSON, got {r}"
            );
        }
        for body in ["not json", "{}", r#"{"val":1}"#, "[1]"] {
            let r = p
                .send(1, Method::PUT, "/data/ok", Some(&sid), Some(body))
                .await;
            assert_eq!(
                r.status.as_u16(),
                400,
                "PUT /data/ok with {body:?}: expected 400, got {r}"
            );
        }
        let r = p.get(0, "/data", Some(&sid)).await;
        expect_reply(
            &r,
            200,
            &json!({"prefs": value, "theme_2": "dark"}),
            "GET /data after bad PUTs",
        );
    })
    .await;
}

/// Parallel requests that set different keys, spread over two instances while other
/// requests only read, keep every change; the reads revert nothing.
pub async fn parallel_distinct_keys_are_kept(t: &Target) {
    run_pair(t, Case::new(), |p| async move {
        let sid = p.new_session().await;
        let writes = (0..16).map(|i| {
            let (p, sid) = (Arc::clone(&p), sid.clone());
            async move {
                let r = p.put_data(i, Some(&sid), &format!("k{i}"), &json!(i)).await;
                expect_reply(
                    &r,
                    200,
                    &json!({"key": format!("k{i}"), "value": i}),
                    "PUT /data in parallel",
                );
            }
        });
        let reads = (0..16_usize).map(|i| {
            let (p, sid) = (Arc::clone(&p), sid.clone());
            async move {
                let path = if i.is_multiple_of(2) {
                    "/peek"
                } else {
                    "/data"
                };
                let r = p.get(i, path, Some(&sid)).await;
                assert_eq!(r.status.as_u16(), 200, "GET {path} in parallel: {r}");
            }
        });
        let writes = tokio::spawn(join_all(writes));
        join_all(reads).await;
        writes.await.expect("writes");
        let expected: serde_json::Map<String, Value> =
            (0..16).map(|i| (format!("k{i}"), json!(i))).collect();
        for i in 0..2 {
            let r = p.get(i, "/data", Some(&sid)).await;
            expect_reply(
                &r,
                200,
                &Value::Object(expected.clone()),
                "GET /data after 16 parallel PUT /data on different keys over two instances",
            );
        }
        let r = p.get(1, "/peek", Some(&sid)).await;
        expect_reply(
            &r,
            200,
            &json!({"count": 1}),
            "GET /peek after the parallel requests",
        );
    })
    .await;
}

/// Sequential increments under a flood of reads on the same session (over two
/// instances) are all kept: a read never writes its stale copy back. The increments
/// alternate between the instances; with the session cache on they all go to one: there
/// another instance may serve a copy up to its staleness bound old (1 s), and an increment
/// made there within that time keeps one of the two, as overlapping requests do
/// (docs/CONTRACT.md, `SESSION_CACHE`).
pub async fn reads_never_revert(t: &Target) {
    let alternate = !t.session_cache();
    run_pair(t, Case::new(), move |p| async move {
        let sid = p.new_session().await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|i| {
                let (p, sid, stop) = (Arc::clone(&p), sid.clone(), Arc::clone(&stop));
                tokio::spawn(async move {
                    let mut n = 0u32;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let path = if n.is_multiple_of(2) {
                            "/peek"
                        } else {
                            "/data"
                        };
                        let r = p.get(i, path, Some(&sid)).await;
                        assert_eq!(
                            r.status.as_u16(),
                            200,
                            "GET {path} during the increments: {r}"
                        );
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let rounds = 100u64;
        for round in 0..rounds {
            let instance = if alternate {
                usize::try_from(round).unwrap_or(0)
            } else {
                0
            };
            let n = p.counter(instance, &sid).await;
            assert_eq!(
                n,
                round + 2,
                "GET /counter #{} under parallel reads: a read wrote back an older count",
                round + 1
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut reads = 0;
        for r in readers {
            reads += r.await.expect("reader");
        }
        assert!(reads > 0, "no read ran during the increments");
        let r = p.get(0, "/peek", Some(&sid)).await;
        expect_reply(
            &r,
            200,
            &json!({"count": rounds + 1}),
            "GET /peek after the increments",
        );
    })
    .await;
}

/// Logouts racing parallel requests on the same session, over two instances, are
/// final: no cookie issued during or after the race is logged in, and no stored
/// session holds the user. Eight clients keep sending `GET /counter`, each following
/// the cookies it is given as a browser does; the logout lands among them.
pub async fn logout_is_final_under_parallel_requests(t: &Target) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const CLIENTS: usize = 8;
    const REQUESTS: usize = 12;
    run_pair(t, Case::new(), |p| async move {
        let mut cookies = BTreeSet::new();
        for round in 0..3 {
            let sid = p.new_session().await;
            let sid = p.login(round, &sid, "victim").await;
            cookies.insert(sid.clone());
            let answered = Arc::new(AtomicUsize::new(0));
            let clients = (0..CLIENTS).map(|c| {
                let (p, answered) = (Arc::clone(&p), Arc::clone(&answered));
                let mut current = sid.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    for n in 0..REQUESTS {
                        let r = p.get(c + n, "/counter", Some(&current)).await;
                        assert_eq!(r.status.as_u16(), 200, "GET /counter racing a logout: {r}");
                        answered.fetch_add(1, Ordering::Relaxed);
                        if let Some(cookie) = r.sid().filter(|c| !c.value.is_empty()) {
                            current = cookie.value.clone();
                            seen.push(current.clone());
                        }
                    }
                    seen
                })
            });
            let clients: Vec<_> = clients.collect();
            // Log out once a few requests have been answered, with the rest in flight.
            while answered.load(Ordering::Relaxed) < CLIENTS {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            let r = p.post(round + 1, "/logout", Some(&sid), "").await;
            expect_reply(&r, 200, &json!({"ok": true}), "POST /logout");
            for c in clients {
                cookies.extend(c.await.expect("client"));
            }
        }
        for (n, sid) in cookies.iter().enumerate() {
            for i in 0..2 {
                let r = p.get(i, "/me", Some(sid)).await;
                expect_reply(
                    &r,
                    401,
                    &json!({"user": null}),
                    &format!(
                        "GET /me with cookie {n} of {} seen during logouts racing GET /counter",
                        cookies.len()
                    ),
                );
            }
        }
        let mut cursor = p.sessions.find(mongodb::bson::doc! {}).await.expect("find");
        while cursor.advance().await.expect("read") {
            let doc: mongodb::bson::Document = cursor.deserialize_current().expect("doc");
            assert!(
                !doc.to_string().contains("victim"),
                "a stored session holds the logged-out user: {doc}"
            );
        }
    })
    .await;
}

/// `SESSION_SERIALIZE=1`: 32 parallel `GET /counter` on one session over two instances
/// give 32 increments, each count seen once.
pub async fn serialized_parallel_counter(t: &Target) {
    run_pair(
        t,
        Case::new().env("SESSION_SERIALIZE", "1"),
        |p| async move {
            let sid = p.new_session().await;
            let counters = (0..32).map(|i| {
                let (p, sid) = (Arc::clone(&p), sid.clone());
                async move { p.counter(i, &sid).await }
            });
            let mut seen: Vec<u64> = join_all(counters).await;
            seen.sort_unstable();
            assert_eq!(
                seen,
                (2..=33).collect::<Vec<u64>>(),
                "32 parallel GET /counter with SESSION_SERIALIZE=1 over two instances: each \
             increment should be seen once"
            );
            let r = p.get(1, "/peek", Some(&sid)).await;
            expect_reply(
                &r,
                200,
                &json!({"count": 33}),
                "GET /peek after 32 serialized increments",
            );
            let doc = p
                .sessions
                .find_one(mongodb::bson::doc! {})
                .await
                .expect("find")
                .expect("the session document");
            assert!(
                !doc.contains_key("leaseToken"),
                "a lease outlived its request: {doc}"
            );
        },
    )
    .await;
}
