//! `GET /metrics`: the store's metrics in Prometheus' text format with `METRICS=1`, and
//! no such route without it.

use super::*;

/// With `METRICS=1`, `GET /metrics` answers `200` in Prometheus' text format and counts
/// what the requests before it did: a login (a create), a counter read (a load that
/// found the session), with latency histograms; it sets no cookie. Without `METRICS` the
/// route does not exist (`404`).
pub async fn metrics(t: &Target) {
    Case::new()
        .env("METRICS", "1")
        .run(t, |c| async move {
            let sid = c.login(None, "ada").await;
            c.get("/me", Some(&sid)).await;
            let r = c.get("/metrics", None).await;
            assert_eq!(r.status.as_u16(), 200, "GET /metrics with METRICS=1: {r}");
            expect_no_set_cookie(&r, "GET /metrics");
            let content_type = r
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert!(
                content_type.starts_with("text/plain"),
                "GET /metrics: Content-Type {content_type:?}, expected text/plain"
            );
            let counted = |line_start: &str| -> f64 {
                r.text
                    .lines()
                    .find(|l| l.starts_with(line_start))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| {
                        panic!("no `{line_start}` sample in GET /metrics:\n{}", r.text)
                    })
            };
            assert!(
                counted(r#"session_store_operations_total{operation="create",outcome="created"}"#)
                    >= 1.0
            );
            assert!(
                counted(r#"session_store_operations_total{operation="load",outcome="hit"}"#) >= 1.0
            );
            assert!(
                counted(r#"session_store_operation_duration_seconds_count{operation="load"}"#)
                    >= 1.0
            );
        })
        .await;
    Case::new()
        .run(t, |c| async move {
            let r = c.get("/metrics", None).await;
            assert_eq!(r.status.as_u16(), 404, "GET /metrics without METRICS: {r}");
        })
        .await;
}
