//! The contract's routes over plain HTTP: health, counter, stored document, peek,
//! login, logout, bad input.

use super::*;

/// `GET /health`: `200 {"ok":true}`, never a cookie, never a session document (also when
/// a session cookie is sent).
pub async fn health(t: &Target) {
    Case::new()
        .run(t, |c| async move {
            let r = c.get("/health", None).await;
            expect_reply(&r, 200, &json!({ "ok": true }), "GET /health");
            expect_no_set_cookie(&r, "GET /health");
            c.expect_docs(0, "GET /health").await;

            let sid = c.counter(None, 1).await;
            let r = c.get("/health", Some(&sid)).await;
            expect_reply(
                &r,
                200,
                &json!({ "ok": true }),
                "GET /health with a session cookie",
            );
            expect_no_set_cookie(&r, "GET /health with a session cookie");
        })
        .await;
}

/// `GET /counter` counts 1, 2, 3 in one session; the `sid` cookie is `HttpOnly`,
/// `SameSite=Lax`, `Path=/`, not `Secure` over HTTP, at least 22 cookie-safe characters; one
/// document is stored.
pub async fn counter(t: &Target) {
    Case::new()
        .run(t, |c| async move {
            let sid = c.counter(None, 1).await;
            let sid = c.counter(Some(&sid), 2).await;
            c.counter(Some(&sid), 3).await;
            c.expect_docs(1, "three GET /counter in one session").await;
        })
        .await;
}

/// The stored document, read directly: `_id`, `session` (JSON text holding the count),
/// `expires` (a BSON date, now + `SESSION_TTL_SECS`), and the TTL index
/// `{expires: 1}` with `expireAfterSeconds: 0`.
pub async fn stored_document(t: &Target) {
    Case::new().env("SESSION_TTL_SECS", "3600").run(t, |c| async move {
        let sid = c.counter(None, 1).await;
        c.counter(Some(&sid), 2).await;
        let written_at = now_millis();
        let doc = c.only_doc("two GET /counter").await;

        assert!(doc.contains_key("_id"), "the session document has no `_id`: {doc}");
        let session: Value = match doc.get("session") {
            Some(Bson::String(text)) => serde_json::from_str(text).unwrap_or_else(|e| {
                panic!("`session` should hold JSON text by default, but {text:?} does not parse: {e}")
            }),
            other => panic!(
                "`session` should be a string holding JSON by default, got {other:?} in {doc}"
            ),
        };
        assert_eq!(
            session.get("count").and_then(Value::as_u64),
            Some(2),
            "`session` should hold the counter value 2 under `count`: {session}"
        );

        let expires = match doc.get("expires") {
            Some(Bson::DateTime(at)) => at.timestamp_millis(),
            other => panic!("`expires` should be a BSON date, got {other:?} in {doc}"),
        };
        let drift = expires - (written_at + 3_600_000);
        assert!(
            drift.abs() <= 120_000,
            "`expires` should be about now + SESSION_TTL_SECS (3600 s), but it is {} s from \
             that: {doc}",
            drift / 1000
        );

        let indexes = c.indexes().await;
        let ttl = indexes.iter().any(|idx| {
            let keys = idx.get_document("key").ok();
            keys.is_some_and(|k| k.len() == 1 && numeric(k.get("expires")) == Some(1.0))
                && numeric(idx.get("expireAfterSeconds")) == Some(0.0)
        });
        assert!(
            ttl,
            "expected a TTL index with key {{expires: 1}} and expireAfterSeconds: 0 on \
             `{COLLECTION}`, found {indexes:?}"
        );
    })
    .await;
}

/// `AUTO_REMOVE=disabled`: no index on `expires` is created.
pub async fn auto_remove_disabled(t: &Target) {
    Case::new()
        .env("AUTO_REMOVE", "disabled")
        .run(t, |c| async move {
            c.counter(None, 1).await;
            c.expect_docs(1, "GET /counter").await;
            let indexes = c.indexes().await;
            let on_expires: Vec<_> = indexes
                .iter()
                .filter(|idx| {
                    idx.get_document("key")
                        .is_ok_and(|k| k.contains_key("expires"))
                })
                .collect();
            assert!(
                on_expires.is_empty(),
                "AUTO_REMOVE=disabled: expected no index on `expires`, found {on_expires:?}"
            );
        })
        .await;
}

/// `GET /peek`: `{"count":0}` without a session and creates none; with one, the current
/// count, unchanged by peeking.
pub async fn peek(t: &Target) {
    Case::new()
        .run(t, |c| async move {
            let r = c.get("/peek", None).await;
            expect_reply(
                &r,
                200,
                &json!({ "count": 0 }),
                "GET /peek without a session",
            );
            expect_no_set_cookie(&r, "GET /peek without a session");
            c.expect_docs(0, "GET /peek without a session").await;

            let sid = c.counter(None, 1).await;
            for n in 1..=2 {
                let r = c.get("/peek", Some(&sid)).await;
                let what = format!("GET /peek #{n} with the session cookie after one GET /counter");
                expect_reply(&r, 200, &json!({ "count": 1 }), &what);
                if let Some(cookie) = r.sid() {
                    assert_eq!(cookie.value, sid, "{what}: the session id changed: {r}");
                }
            }
            c.counter(Some(&sid), 2).await;
            c.expect_docs(1, "GET /counter, GET /peek x2, GET /counter")
                .await;
        })
        .await;
}

/// `TOUCH_AFTER_SECS=3600`: the document has `lastModified`, and reads inside the window
/// leave `expires`, `lastModified` and `session` untouched (no write).
pub async fn peek_within_touch_window(t: &Target) {
    Case::new().env("TOUCH_AFTER_SECS", "3600").run(t, |c| async move {
        let sid = c.counter(None, 1).await;
        let before = c.only_doc("GET /counter").await;
        assert!(
            matches!(before.get("lastModified"), Some(Bson::DateTime(_))),
            "with TOUCH_AFTER_SECS set the document should have a `lastModified` date: {before}"
        );
        for _ in 0..5 {
            let r = c.get("/peek", Some(&sid)).await;
            expect_reply(&r, 200, &json!({ "count": 1 }), "GET /peek inside the touch window");
        }
        let after = c.only_doc("GET /counter and 5 GET /peek").await;
        for field in ["expires", "lastModified", "session"] {
            assert_eq!(
                before.get(field),
                after.get(field),
                "`{field}` changed after 5 GET /peek inside the touch window \
                 (TOUCH_AFTER_SECS=3600): nothing should be written\nbefore: {before}\nafter:  {after}"
            );
        }
    })
    .await;
}

/// `POST /login` stores the user and rotates the id: the new id loads the user and the
/// old data, the old id loads nothing, one document remains.
pub async fn login_rotates_id(t: &Target) {
    Case::new()
        .run(t, |c| async move {
            let old = c.counter(None, 1).await;
            let new = c.login(Some(&old), "alice").await;

            let r = c.get("/me", Some(&new)).await;
            expect_reply(
                &r,
                200,
                &json!({ "user": "alice" }),
                "GET /me with the rotated id",
            );
            let r = c.get("/me", Some(&old)).await;
            expect_reply(
                &r,
                401,
                &json!({ "user": null }),
                "GET /me with the id from before the login (it must no longer load)",
            );
            c.counter(Some(&new), 2).await;
            c.expect_docs(1, "GET /counter, POST /login, GET /counter")
                .await;
        })
        .await;
}

/// `GET /me` without a session: `401 {"user":null}`, and no session is created.
pub async fn me_without_session(t: &Target) {
    Case::new()
        .run(t, |c| async move {
            let r = c.get("/me", None).await;
            expect_reply(
                &r,
                401,
                &json!({ "user": null }),
                "GET /me without a session",
            );
            c.expect_docs(0, "GET /me without a session").await;
        })
        .await;
}

/// `POST /logout`: `200 {"ok":true}`, the cookie expired, the document deleted, the id no
/// longer loads.
pub async fn logout(t: &Target) {
    Case::new()
        .run(t, |c| async move {
            let sid = c.counter(None, 1).await;
            let sid = c.login(Some(&sid), "alice").await;
            let r = c
                .server()
                .request(Method::POST, "/logout", Some(&sid), None)
                .await
                .unwrap_or_else(|e| panic!("{e:#}"));
            expect_reply(&r, 200, &json!({ "ok": true }), "POST /logout");
            let cookie = r.sid().unwrap_or_else(|| {
                panic!("POST /logout: expected a Set-Cookie that expires `{COOKIE_NAME}`, got {r}")
            });
            assert!(
            cookie.removes_at(OffsetDateTime::now_utc()),
            "POST /logout: the Set-Cookie for `{COOKIE_NAME}` does not expire it (Max-Age=0 or \
             an Expires date in the past): {cookie}"
        );
            c.expect_docs(0, "POST /logout").await;
            let r = c.get("/me", Some(&sid)).await;
            expect_reply(
                &r,
                401,
                &json!({ "user": null }),
                "GET /me with the logged-out id",
            );
        })
        .await;
}

/// `POST /login` with a malformed or wrong-shaped JSON body: `400` with a JSON body,
/// never a `500`, with or without a session.
pub async fn malformed_body(t: &Target) {
    Case::new()
        .run(t, |c| async move {
            let sid = c.counter(None, 1).await;
            for cookie in [None, Some(sid.as_str())] {
                for body in ["not json", r#"{"nope":1}"#] {
                    let r = c.post("/login", cookie, body).await;
                    let with = if cookie.is_some() { "with" } else { "without" };
                    assert!(
                        r.status == StatusCode::BAD_REQUEST && r.json.is_some(),
                        "POST /login {body:?} (application/json, {with} a session): expected 400 \
                     with a JSON error body, got {r}"
                    );
                }
            }
            // The session survives a rejected login.
            c.counter(Some(&sid), 2).await;
        })
        .await;
}

/// `GET /whoami` over plain HTTP (no client certificate): `401` with a JSON body.
pub async fn whoami_over_plain_http(t: &Target) {
    Case::new()
        .run(t, |c| async move {
            let r = c.get("/whoami", None).await;
            assert!(
                r.status == StatusCode::UNAUTHORIZED && r.json.is_some(),
                "GET /whoami without a client certificate: expected 401 with a JSON body, got {r}"
            );
        })
        .await;
}

/// A `sid` the server never issued: `/peek` and `/me` see no session and store nothing;
/// `/counter` starts a new session under a new, server-chosen id.
pub async fn unknown_cookie(t: &Target) {
    Case::new()
        .run(t, |c| async move {
            let alphanumeric = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            let forged = [forged_id(b"", 0), forged_id(alphanumeric, 64)];
            for id in &forged {
                let r = c.get("/peek", Some(id)).await;
                expect_reply(
                    &r,
                    200,
                    &json!({ "count": 0 }),
                    &format!("GET /peek with unknown sid {id}"),
                );
                let r = c.get("/me", Some(id)).await;
                expect_reply(
                    &r,
                    401,
                    &json!({ "user": null }),
                    &format!("GET /me with unknown sid {id}"),
                );
            }
            c.expect_docs(0, "GET /peek and GET /me with unknown session ids")
                .await;

            for (n, id) in forged.iter().enumerate() {
                let r = c.get("/counter", Some(id)).await;
                let what = format!("GET /counter with unknown sid {id}");
                expect_reply(&r, 200, &json!({ "count": 1 }), &what);
                let cookie = r.sid().unwrap_or_else(|| {
                    panic!("{what}: expected a Set-Cookie for a new session, got {r}")
                });
                let issued = session_cookie(cookie, &what, false);
                assert_ne!(
                    &issued, id,
                    "{what}: the server adopted the client-chosen id; it must issue its own"
                );
                c.expect_docs(n as u64 + 1, &what).await;
            }
            for doc in c.docs().await {
                let key = doc.get_str("_id").unwrap_or_default();
                assert!(
                    !forged.iter().any(|id| key.contains(id.as_str())),
                    "a session document is stored under the client-chosen id: {doc}"
                );
            }
        })
        .await;
}
