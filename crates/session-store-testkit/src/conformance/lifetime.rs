//! How long a session lives: the touch window never outlasts the framework's expiry, and
//! an absolute lifetime bounds even a session in steady use.

use super::*;

/// `touch_after` longer than the framework's inactivity expiry: an unchanged session in
/// use is still touched before it would expire (a skipped touch would let it lapse).
pub async fn touch_window_never_lets_an_active_session_expire<B: DocumentBackend + Clone>(
    backend: B,
) {
    let f = fixture(backend, |b| b.touch_after(StdDuration::from_secs(50 * 60))).await;
    let inactivity = Duration::minutes(30);
    let id = f
        .store
        .create(&data(json!({"n": 1})), Some(f.clock.now() + inactivity))
        .await
        .unwrap();
    // Active every 20 minutes, reading only, for two hours.
    for step in 1..=6 {
        f.clock.advance(Duration::minutes(20));
        let request = RequestScope::new();
        let loaded = request.run(f.store.load(id.as_str())).await.unwrap();
        let Some(session) = loaded else {
            panic!(
                "an active session expired after {} minutes of use every 20 minutes \
                 (framework expiry 30 minutes, touch_after 50 minutes)",
                step * 20
            );
        };
        let expires = f.clock.now() + inactivity;
        request
            .run(f.store.save(id.as_str(), &session.data, Some(expires)))
            .await
            .unwrap();
    }
}
