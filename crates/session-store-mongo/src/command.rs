//! Running one MongoDB command of a store operation: its tracing span, its bounds (the
//! operation timeout on the client, `maxTimeMS` on the server), and finishing it when the
//! request that started it goes away.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tracing::Instrument as _;

use crate::backend::MongoBackend;
use crate::codes::{command_code, MAX_TIME_MS_EXPIRED};
use crate::error::MongoError;

impl MongoBackend {
    /// Runs one MongoDB command of a store operation with the operation timeout, in a
    /// span named and fielded as OpenTelemetry's database conventions say
    /// (`db.system.name`, `db.namespace`, `db.collection.name`, `db.operation.name`,
    /// and `error.type` on failure).
    ///
    /// The command runs on the caller's task. If the caller is dropped before the reply
    /// (a client that went away), the rest of the command moves to a task of its own and
    /// runs to completion within the operation timeout: the driver closes a connection
    /// whose command is dropped before its reply, and many at once (a load balancer
    /// dropping its connections) stalled its pool for minutes. Only a dropped command
    /// pays for a task; one that finishes costs a boxed future.
    pub(crate) async fn command<T: Send + 'static, E: Failed>(
        &self,
        operation: &'static str,
        command: &'static str,
        fut: impl Future<Output = Result<T, E>> + Send + 'static,
    ) -> Result<T, E> {
        self.command_or(operation, command, fut, None).await
    }

    /// [`command`](Self::command), and `orphan` gets the result if the caller is gone
    /// before it arrives (the command still ran: what it took must be given back).
    pub(crate) async fn command_or<T: Send + 'static, E: Failed>(
        &self,
        operation: &'static str,
        command: &'static str,
        fut: impl Future<Output = Result<T, E>> + Send + 'static,
        orphan: Option<Orphan<Result<T, E>>>,
    ) -> Result<T, E> {
        let span = tracing::debug_span!(
            "mongodb",
            otel.name = %format_args!("{command} {}", self.inner.collection_name),
            otel.kind = "client",
            db.system.name = "mongodb",
            db.namespace = %self.inner.database,
            db.collection.name = %self.inner.collection_name,
            db.operation.name = command,
            error.type = tracing::field::Empty,
        );
        let result = Detaching {
            fut: Some(Box::pin(
                bounded(operation, self.timeout(), fut).instrument(span.clone()),
            )),
            orphan,
        }
        .await;
        if let Err(e) = &result {
            span.record("error.type", e.error_type());
        }
        result
    }
}

/// An error a command can end with: a timeout is one, and each has an `error.type`.
pub(crate) trait Failed: From<MongoError> + Send + 'static {
    /// The failure's `error.type` in OpenTelemetry's terms.
    fn error_type(&self) -> String;
}

impl Failed for MongoError {
    fn error_type(&self) -> String {
        MongoError::error_type(self)
    }
}

/// What to do with a command's result that its caller, gone, will never take.
pub(crate) type Orphan<T> = Box<dyn FnOnce(T) -> BoxFuture<'static, ()> + Send>;

/// A command polled by its caller. Dropped before it finished (the caller was
/// cancelled), it goes on as a task of its own, and hands its result to the orphan
/// handler when it arrives.
struct Detaching<T: Send + 'static> {
    fut: Option<BoxFuture<'static, T>>,
    orphan: Option<Orphan<T>>,
}

impl<T: Send + 'static> Future for Detaching<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Some(fut) = self.fut.as_mut() else {
            unreachable!("a command is not polled after it finished")
        };
        let result = std::task::ready!(fut.as_mut().poll(cx));
        self.fut = None;
        Poll::Ready(result)
    }
}

impl<T: Send + 'static> Drop for Detaching<T> {
    fn drop(&mut self) {
        let Some(fut) = self.fut.take() else {
            return;
        };
        // Dropped where no runtime runs (it shut down first): nothing can finish the
        // command; what it took (a lease) runs out on its own.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!("a command was dropped outside a runtime; its result is lost");
            return;
        };
        let orphan = self.orphan.take();
        runtime.spawn(async move {
            let result = fut.await;
            if let Some(orphan) = orphan {
                orphan(result).await;
            }
        });
    }
}

/// Runs `fut` with a deadline.
pub(crate) async fn bounded<T, E: From<MongoError>>(
    operation: &'static str,
    timeout: Duration,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| Err(MongoError::Timeout { operation, timeout }.into()))
}

pub(crate) fn driver(operation: &'static str) -> impl FnOnce(mongodb::error::Error) -> MongoError {
    move |source| MongoError::driver(operation, source)
}

/// How long the server may work on one operation (`maxTimeMS`): 90 % of the operation
/// timeout, so that a slow or write-locked server answers "time limit exceeded" before
/// the client gives up. The connection then stays in the pool and nothing is left
/// running on the server; only a server that does not answer at all (hung, gone) costs
/// the connection.
pub(crate) fn server_time_limit(timeout: Duration) -> Duration {
    timeout.mul_f64(0.9).max(Duration::from_millis(1))
}

/// A driver error of `operation`, or a timeout when the server gave up at `maxTimeMS`.
pub(crate) fn failed(
    operation: &'static str,
    timeout: Duration,
) -> impl FnOnce(mongodb::error::Error) -> MongoError {
    move |source| {
        if command_code(&source) == Some(MAX_TIME_MS_EXPIRED) {
            MongoError::Timeout { operation, timeout }
        } else {
            MongoError::driver(operation, source)
        }
    }
}
