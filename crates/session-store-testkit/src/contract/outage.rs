//! Behaviour while MongoDB hangs or is down, and recovery.

use super::*;

/// MongoDB hangs (SIGSTOP), comes back, goes away (SIGTERM) and comes back (restart) under
/// a running server: while it is out, `/counter` answers `503
/// {"error":"session store unavailable"}` with `Retry-After` and no cookie and `/health`
/// answers 200; afterwards the same process serves the same session with every
/// acknowledged increment. Needs `MONGOD_BIN` (a private mongod is started).
pub async fn mongodb_outage(t: &Target) {
    let Some(mongod_bin) = live::mongod_bin() else {
        return;
    };
    let mongod = PrivateMongod::start(&mongod_bin)
        .await
        .unwrap_or_else(|e| panic!("starting a private mongod for the outage case: {e:#}"));
    let uri = mongod.uri();
    Case::new()
        .on_private_mongod(uri)
        .run(t, |c| async move {
            let mut mongod = mongod;
            let sid = c.counter(None, 1).await;
            let sid = c.counter(Some(&sid), 2).await;

            mongod.pause().unwrap_or_else(|e| panic!("{e:#}"));
            c.expect_unavailable(&sid, "MongoDB is paused (hung)").await;
            mongod.resume().unwrap_or_else(|e| panic!("{e:#}"));
            let (sid, count) = c
                .counter_after_outage(&sid, 3, "after MongoDB resumed")
                .await;

            mongod.stop().await.unwrap_or_else(|e| panic!("{e:#}"));
            c.expect_unavailable(&sid, "MongoDB is stopped (unreachable)")
                .await;
            mongod.restart().await.unwrap_or_else(|e| panic!("{e:#}"));
            c.counter_after_outage(&sid, count + 1, "after MongoDB restarted")
                .await;
            assert!(
                c.server().is_running(),
                "the server under test exited during the outage"
            );
        })
        .await;
}
