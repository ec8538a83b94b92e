//! The absolute lifetime (`SESSION_MAX_LIFETIME_SECS`).

use super::*;

/// `SESSION_MAX_LIFETIME_SECS=3` with a one-hour TTL: a session used every 300 ms keeps
/// counting, its stored `expires` never passes creation + 3 s, and after 3 s the next
/// request finds no session (the count starts again at 1 under a new id).
pub async fn absolute_lifetime(t: &Target) {
    let case = Case::new()
        .env("SESSION_TTL_SECS", "3600")
        .env("SESSION_MAX_LIFETIME_SECS", "3");
    case.run(t, |c| async move {
        let lifetime = Duration::from_secs(3);
        let first = c.counter(None, 1).await;
        let started = Instant::now();
        let created = match c.only_doc("GET /counter").await.get("createdAt") {
            Some(Bson::DateTime(at)) => at.timestamp_millis(),
            other => panic!(
                "with SESSION_MAX_LIFETIME_SECS the document stores createdAt, got {other:?}"
            ),
        };
        let mut expected = 2;
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let r = c.get("/counter", Some(&first)).await;
            let count = r.json.as_ref().and_then(|j| j["count"].as_u64());
            let elapsed = started.elapsed();
            if count == Some(expected) {
                assert!(
                    elapsed < lifetime + Duration::from_millis(500),
                    "the session still counted ({expected}) {elapsed:?} after creation, past \
                     its 3 s absolute lifetime: {r}"
                );
                for doc in c.docs().await {
                    if let Some(Bson::DateTime(expires)) = doc.get("expires") {
                        assert!(
                            expires.timestamp_millis() <= created + 3_000,
                            "stored expires {expires} is past createdAt + 3 s: {doc}"
                        );
                    }
                }
                expected += 1;
                continue;
            }
            assert_eq!(
                count,
                Some(1),
                "after the lifetime the count must start again at 1, got {r}"
            );
            assert!(
                elapsed >= lifetime - Duration::from_millis(500),
                "the session ended after {elapsed:?}, before its 3 s lifetime: {r}"
            );
            let renewed = r.sid().expect("a new session cookie");
            assert_ne!(renewed.value, first, "the ended session's id was reused");
            break;
        }
    })
    .await;
}
