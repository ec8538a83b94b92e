//! A user's sessions over HTTP: `GET /sessions`, `DELETE /sessions/{handle}`,
//! `POST /logout-everywhere`, across two server processes on one collection.

use super::*;

/// What `GET /sessions` listed: `(handle, current)` of each entry, its times checked.
fn listed(r: &Reply, what: &str) -> Vec<(String, bool)> {
    assert_eq!(r.status.as_u16(), 200, "{what}: {r}");
    let sessions = r
        .json
        .as_ref()
        .and_then(|j| j["sessions"].as_array())
        .unwrap_or_else(|| panic!("{what}: expected {{\"sessions\":[...]}}, got {r}"));
    sessions
        .iter()
        .map(|s| {
            for field in ["created_at", "last_seen"] {
                let text = s[field].as_str().unwrap_or_default();
                assert!(
                    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                        .is_ok(),
                    "{what}: `{field}` is not an RFC 3339 time: {s}"
                );
            }
            (
                s["handle"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{what}: no handle in {s}"))
                    .to_owned(),
                s["current"]
                    .as_bool()
                    .unwrap_or_else(|| panic!("{what}: no `current` in {s}")),
            )
        })
        .collect()
}

/// Ann logs in on two instances, Bob on one. Ann's list (asked on the other instance)
/// shows both of hers with the asking one current; revoking her other session by handle
/// ends it; a junk handle, Bob's handle, or no login are `404`/`401`, never `500`; a handle
/// sent as a cookie is no session; logging out everywhere ends all of Ann's sessions and
/// expires her cookie, and Bob stays logged in.
pub async fn a_users_sessions(t: &Target) {
    Case::new()
        .instances(2)
        .run(t, |c| async move {
            let on = |i: usize| &c.servers[i % 2];
            let send = |i: usize,
                        method: Method,
                        path: String,
                        sid: Option<String>,
                        body: Option<&'static str>| async move {
                on(i)
                    .request(method, &path, sid.as_deref(), body)
                    .await
                    .unwrap_or_else(|e| panic!("{e:#}"))
            };
            let login = |i: usize, user: &'static str| async move {
                let body: &'static str = if user == "ann" {
                    r#"{"user":"ann"}"#
                } else {
                    r#"{"user":"bob"}"#
                };
                let r = send(i, Method::POST, "/login".into(), None, Some(body)).await;
                expect_reply(&r, 200, &json!({ "user": user }), "POST /login");
                r.sid().expect("login sets the cookie").value.clone()
            };
            let laptop = login(0, "ann").await;
            let phone = login(1, "ann").await;
            let bob = login(0, "bob").await;

            let r = send(
                1,
                Method::GET,
                "/sessions".into(),
                Some(laptop.clone()),
                None,
            )
            .await;
            let mine = listed(&r, "GET /sessions (ann, laptop)");
            assert_eq!(mine.len(), 2, "ann has two sessions: {r}");
            assert_eq!(
                mine.iter().filter(|(_, current)| *current).count(),
                1,
                "{r}"
            );
            let phone_handle = mine.iter().find(|(_, current)| !current).unwrap().0.clone();
            let r = send(0, Method::GET, "/sessions".into(), Some(bob.clone()), None).await;
            let bobs = listed(&r, "GET /sessions (bob)");
            assert_eq!(bobs.len(), 1, "{r}");

            for (path, what) in [
                (format!("/sessions/{}", bobs[0].0), "bob's handle"),
                ("/sessions/not-a-handle".to_owned(), "a junk handle"),
                (
                    format!("/sessions/{phone_handle}%00"),
                    "a handle with a NUL",
                ),
            ] {
                let r = send(1, Method::DELETE, path, Some(laptop.clone()), None).await;
                assert_eq!(
                    r.status.as_u16(),
                    404,
                    "DELETE /sessions/... with {what}: {r}"
                );
            }
            for (method, path) in [
                (Method::GET, "/sessions".to_owned()),
                (Method::POST, "/logout-everywhere".to_owned()),
                (Method::DELETE, format!("/sessions/{phone_handle}")),
            ] {
                let r = send(0, method.clone(), path.clone(), None, None).await;
                assert_eq!(
                    r.status.as_u16(),
                    401,
                    "{method} {path} without a login: {r}"
                );
            }
            // A handle is not a cookie.
            let r = send(
                0,
                Method::GET,
                "/me".into(),
                Some(phone_handle.clone()),
                None,
            )
            .await;
            expect_reply(
                &r,
                401,
                &json!({ "user": null }),
                "GET /me with a handle as the cookie",
            );

            let r = send(
                0,
                Method::DELETE,
                format!("/sessions/{phone_handle}"),
                Some(laptop.clone()),
                None,
            )
            .await;
            expect_reply(
                &r,
                200,
                &json!({ "revoked": 1 }),
                "DELETE /sessions/{phone}",
            );
            let r = send(1, Method::GET, "/me".into(), Some(phone.clone()), None).await;
            expect_reply(
                &r,
                401,
                &json!({ "user": null }),
                "GET /me on the revoked phone",
            );

            let phone = login(1, "ann").await;
            let r = send(
                0,
                Method::POST,
                "/logout-everywhere".into(),
                Some(laptop.clone()),
                None,
            )
            .await;
            expect_reply(
                &r,
                200,
                &json!({ "revoked": 2, "complete": true }),
                "POST /logout-everywhere",
            );
            assert!(
                r.sid()
                    .is_some_and(|cookie| cookie.removes_at(OffsetDateTime::now_utc())),
                "POST /logout-everywhere must expire the cookie: {r}"
            );
            for (sid, device) in [(&laptop, "laptop"), (&phone, "phone")] {
                for i in 0..2 {
                    let r = send(i, Method::GET, "/me".into(), Some(sid.clone()), None).await;
                    expect_reply(
                        &r,
                        401,
                        &json!({ "user": null }),
                        &format!("GET /me on ann's {device} after logging out everywhere"),
                    );
                }
            }
            let r = send(1, Method::GET, "/me".into(), Some(bob.clone()), None).await;
            expect_reply(
                &r,
                200,
                &json!({ "user": "bob" }),
                "GET /me on bob's session",
            );
        })
        .await;
}

/// With `SESSION_KEYS`, the stored `owner` is not the user name, and listing works.
pub async fn owner_unreadable_with_encryption(t: &Target) {
    let case = Case::new()
        .env("SESSION_KEYS", format!("k1:{KEY_1}"))
        .env("SESSION_OWNER_KEY", OWNER_KEY);
    case.run(t, |c| async move {
        let sid = c.login(None, "owner-name-marker").await;
        let doc = c.only_doc("POST /login").await;
        let owner = doc
            .get_str("owner")
            .unwrap_or_else(|_| panic!("no owner stored: {doc}"));
        assert!(
            !owner.contains("owner-name-marker"),
            "the owner is readable: {doc}"
        );
        let r = c.get("/sessions", Some(&sid)).await;
        assert_eq!(
            listed(&r, "GET /sessions with SESSION_KEYS").len(),
            1,
            "{r}"
        );
    })
    .await;
}

/// "Log out everywhere" after `SESSION_OWNER_KEY` changed reaches every session of the
/// user: one stored before owners were recorded (no `owner` field), one tagged under the
/// earlier key (kept in `SESSION_OWNER_KEY_PREVIOUS`) and one tagged under the new key;
/// the reply says the revocation is complete, and none of them works afterwards.
pub async fn log_out_everywhere_after_an_owner_key_change(t: &Target) {
    Case::new()
        .env("SESSION_OWNER_KEY", OWNER_KEY)
        .run(t, |c| async move {
            let before_owners = c.login(None, "ann").await;
            c.sessions
                .update_many(doc! {}, doc! { "$unset": { "owner": "" } })
                .await
                .expect("unset owner");
            let earlier_key = c.login(None, "ann").await;
            c.server().kill();

            let server = c
                .start_server(&[
                    ("SESSION_OWNER_KEY", KEY_2.to_owned()),
                    ("SESSION_OWNER_KEY_PREVIOUS", OWNER_KEY.to_owned()),
                ])
                .await;
            let reply = |r: anyhow::Result<Reply>| r.unwrap_or_else(|e| panic!("{e:#}"));
            let r = reply(server.post("/login", None, r#"{"user":"ann"}"#).await);
            let current = session_cookie(
                r.sid().expect("login sets the cookie"),
                "POST /login",
                server.https,
            );
            let r = reply(server.post("/logout-everywhere", Some(&current), "").await);
            expect_reply(
                &r,
                200,
                &json!({ "revoked": 3, "complete": true }),
                "POST /logout-everywhere after an owner key change",
            );
            for (sid, which) in [
                (&before_owners, "stored before owners"),
                (&earlier_key, "tagged under the earlier owner key"),
                (&current, "tagged under the current owner key"),
            ] {
                let r = reply(server.get("/me", Some(sid)).await);
                expect_reply(
                    &r,
                    401,
                    &json!({ "user": null }),
                    &format!("GET /me on ann's session {which} after logging out everywhere"),
                );
            }
        })
        .await;
}
