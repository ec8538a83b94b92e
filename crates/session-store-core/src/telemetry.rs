//! What operators see of each store operation: a `DEBUG` span `session_store.<op>` with
//! its outcome (not `INFO`: with tracing's `log` feature a span's entry and exit reach
//! `log`-based apps, and an `INFO` span would put lines in their log on every request),
//! one `WARN` line per failure, and, with the `metrics` feature, metrics
//! through the [`metrics`](https://docs.rs/metrics) facade (a no-op until the
//! application installs a recorder, e.g. `metrics-exporter-prometheus`).
//!
//! (The metrics are listed in the crate docs' Telemetry section.)

use std::future::Future;

use tracing::Instrument as _;

use crate::error::Error;
use crate::failure::StoreFailure;
use crate::scope::RequestScope;

/// One store operation: its name (a metric label) and its span.
pub(crate) struct Op {
    pub(crate) name: &'static str,
    pub(crate) span: tracing::Span,
}

/// The [`Op`] for `session_store.<name>`.
macro_rules! op {
    ($name:literal) => {
        $crate::telemetry::Op {
            name: $name,
            span: tracing::debug_span!(
                concat!("session_store.", $name),
                outcome = tracing::field::Empty
            ),
        }
    };
}
pub(crate) use op;

/// What one operation did, as its span's `outcome` field and its metric label say it.
pub(crate) trait Outcome: Copy {
    fn label(self) -> &'static str;
}

/// Declares an operation's outcome enum and its labels.
macro_rules! outcomes {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $crate::telemetry::Outcome for $name {
            fn label(self) -> &'static str {
                match self {
                    $(Self::$variant => $label),+
                }
            }
        }
    };
}
pub(crate) use outcomes;

outcomes! {
    /// An operation that either works or fails (counting, listing, clearing, ...).
    Done { Ok => "ok" }
}

/// Runs one store operation inside its span, records its outcome (span field and
/// metrics), logs a failure once, at `WARN`, and notes it in the request's `scope` (for
/// the adapter's response).
pub(crate) async fn traced<T, O: Outcome>(
    op: Op,
    scope: Option<&RequestScope>,
    fut: impl Future<Output = Result<(T, O), Error>>,
) -> Result<T, Error> {
    #[cfg(feature = "metrics")]
    let started = std::time::Instant::now();
    let result = fut.instrument(op.span.clone()).await;
    let outcome: &'static str = match &result {
        Ok((_, outcome)) => outcome.label(),
        Err(e) => {
            tracing::warn!(
                parent: &op.span,
                operation = op.name,
                error = %crate::error::error_chain(e),
                "session store operation failed"
            );
            if let Some(scope) = scope {
                scope.failed(StoreFailure::of(e));
            }
            #[cfg(feature = "metrics")]
            metrics::counter!(
                "session_store_errors_total",
                "operation" => op.name,
                "kind" => error_kind(e)
            )
            .increment(1);
            "error"
        }
    };
    op.span.record("outcome", outcome);
    #[cfg(feature = "metrics")]
    {
        metrics::counter!(
            "session_store_operations_total",
            "operation" => op.name,
            "outcome" => outcome
        )
        .increment(1);
        metrics::histogram!(
            "session_store_operation_duration_seconds",
            "operation" => op.name
        )
        .record(started.elapsed());
    }
    result.map(|(value, _)| value)
}

#[cfg(feature = "metrics")]
fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::Backend { .. } => "unavailable",
        Error::Busy { .. } => "busy",
        Error::Contention { .. } => "contention",
        Error::LeaseLost { .. } => "lease_lost",
        Error::NoRequestScope { .. } => "no_request_scope",
        Error::Encode(_) => "encode",
        Error::Encrypt(_) => "encrypt",
        Error::InvalidOption { .. } => "invalid_option",
        Error::IdCollision { .. } => "id_collision",
    }
}

/// Counts `n` expired sessions deleted, in `session_store_expired_deleted_total` (with
/// the `metrics` feature; otherwise nothing). The store counts what
/// [`SessionStore::delete_expired`](crate::SessionStore::delete_expired) deletes; a
/// [`DocumentBackend`](crate::backend::DocumentBackend) that deletes expired documents on its own
/// schedule (an interval reaper) calls this.
pub fn record_expired_deleted(n: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!("session_store_expired_deleted_total").increment(n);
    #[cfg(not(feature = "metrics"))]
    let _ = n;
}

/// Counts one use of an encryption key.
pub(crate) fn key_used(key_id: &str, use_: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "session_store_key_uses_total",
        "key_id" => key_id.to_owned(),
        "use" => use_
    )
    .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (key_id, use_);
}
