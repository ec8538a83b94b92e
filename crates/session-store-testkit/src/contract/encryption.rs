//! Encryption at rest and key rotation across restarts.

use super::*;

/// The envelope of an encrypted `session` field: its bytes, checked to be a BSON binary
/// starting with version 1 and a key id.
pub(crate) fn envelope(doc: &Document, what: &str) -> Vec<u8> {
    match doc.get("session") {
        Some(Bson::Binary(bin)) if bin.bytes.len() > 2 && bin.bytes[0] == 1 => bin.bytes.clone(),
        other => panic!(
            "{what}: with SESSION_KEYS set, `session` should be a binary envelope of version 1, \
             got {other:?} in {doc}"
        ),
    }
}

/// The key id an envelope names.
pub(crate) fn envelope_key_id(bytes: &[u8]) -> String {
    let len = usize::from(bytes[1]);
    String::from_utf8_lossy(&bytes[2..2 + len]).into_owned()
}

/// `SESSION_KEYS` set: the stored `session` is an encrypted envelope in which the
/// plaintext (a marker user name) does not appear, `_id` is neither the cookie value nor
/// part of it, and the session reads back over HTTP.
pub async fn encrypted_at_rest(t: &Target) {
    let keys = format!("k1:{KEY_1}");
    Case::new()
        .env("SESSION_KEYS", keys)
        .env("SESSION_OWNER_KEY", OWNER_KEY)
        .run(t, |c| async move {
            let marker = unique_name("plaintext-marker");
            let sid = c.counter(None, 1).await;
            let sid = c.login(Some(&sid), &marker).await;
            let what = "GET /counter, POST /login with SESSION_KEYS set";
            let doc = c.only_doc(what).await;
            let sealed = envelope(&doc, what);
            assert_eq!(envelope_key_id(&sealed), "k1", "{what}: envelope key id");
            // `to_writer` is in bson 2 and bson 3 alike.
            let mut raw = Vec::new();
            doc.to_writer(&mut raw).expect("the document serializes");
            assert!(
                !raw.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "{what}: the user name {marker:?} appears in clear in the stored document {doc}"
            );
            let id = doc
                .get_str("_id")
                .unwrap_or_else(|_| panic!("{what}: `_id` is not a string: {doc}"));
            assert!(
            !sid.contains(id) && !id.contains(sid.as_str()),
            "{what}: the stored `_id` {id:?} gives away the cookie {sid:?}; it must be a digest"
        );
            let r = c.get("/me", Some(&sid)).await;
            expect_reply(
                &r,
                200,
                &json!({ "user": marker }),
                "GET /me of an encrypted session",
            );
        })
        .await;
}

/// Rotation between two server starts: sessions written with `old` still load after
/// `SESSION_KEYS=new:...,old:...`, and a session used then (even by a read-only request)
/// is re-sealed with `new`; with `old` removed, a session not used in between is "no
/// session" (401 on `/me`, not a 500).
pub async fn key_rotation_across_restarts(t: &Target) {
    let old = format!("old:{KEY_1}");
    Case::new()
        .env("SESSION_KEYS", old)
        .env("SESSION_OWNER_KEY", OWNER_KEY)
        .run(t, |c| async move {
            let keys = |keys: String| {
                [
                    ("SESSION_KEYS", keys),
                    ("SESSION_OWNER_KEY", OWNER_KEY.to_owned()),
                ]
            };
            let key_ids = || async {
                let mut ids = Vec::new();
                let mut cursor = c.sessions.find(doc! {}).await.expect("find");
                while cursor.advance().await.expect("cursor") {
                    let doc = cursor.deserialize_current().expect("document");
                    ids.push(envelope_key_id(&envelope(&doc, "after rotation")));
                }
                ids.sort();
                ids
            };

            let server = c.server();
            let reply = |r: anyhow::Result<Reply>| r.unwrap_or_else(|e| panic!("{e:#}"));
            let r = reply(server.post("/login", None, r#"{"user":"ann"}"#).await);
            let ann = session_cookie(
                r.sid().expect("login sets the cookie"),
                "POST /login",
                false,
            );
            let r = reply(server.post("/login", None, r#"{"user":"bob"}"#).await);
            let bob = session_cookie(
                r.sid().expect("login sets the cookie"),
                "POST /login",
                false,
            );
            assert_eq!(key_ids().await, ["old", "old"]);
            server.kill();

            let server = c
                .start_server(&keys(format!("new:{KEY_2},old:{KEY_1}")))
                .await;
            // Only ann comes back, and only reads: her session is re-sealed with the new
            // first key; bob's, unused, stays on the old one.
            let r = reply(server.get("/me", Some(&ann)).await);
            expect_reply(
                &r,
                200,
                &json!({ "user": "ann" }),
                "GET /me after adding a new first key",
            );
            assert_eq!(
                key_ids().await,
                ["new", "old"],
                "a read-only request must re-seal its session with the first key, and only it"
            );
            let r = reply(server.get("/counter", Some(&ann)).await);
            expect_reply(
                &r,
                200,
                &json!({ "count": 1 }),
                "GET /counter after rotation",
            );
            server.kill();

            let server = c
                .start_server(&keys(format!("new:{KEY_2},other:{KEY_3}")))
                .await;
            let r = reply(server.get("/me", Some(&ann)).await);
            expect_reply(
                &r,
                200,
                &json!({ "user": "ann" }),
                "GET /me with the old key removed, re-encrypted session",
            );
            let r = reply(server.get("/me", Some(&bob)).await);
            expect_reply(
            &r,
            401,
            &json!({ "user": null }),
            "GET /me of a session sealed with a removed key (it must be no session, not an error)",
        );
            let log = server.log();
            assert!(
                log.contains("decrypt") || log.contains("key ring"),
                "the server should log why a session could not be read; its log:\n{log}"
            );
        })
        .await;
}
