//! What a future logs, for tests that check how failures are reported.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::instrument::WithSubscriber as _;
use tracing_subscriber::fmt::format::FmtSpan;

/// Where the captured lines go.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `fut` with a subscriber of its own and returns its output and every event it
/// logged at `WARN` or above, one per line (no colours).
pub async fn warnings_of<F: Future>(fut: F) -> (F::Output, String) {
    captured(fut, tracing::Level::WARN, FmtSpan::NONE).await
}

/// Runs `fut` with a subscriber of its own and returns its output and a line for every
/// `DEBUG` (or higher) span it closed, with the span's fields (no colours).
pub async fn spans_of<F: Future>(fut: F) -> (F::Output, String) {
    captured(fut, tracing::Level::DEBUG, FmtSpan::CLOSE).await
}

/// What `fut` logged at `level` or above, with `spans` events, as text.
async fn captured<F: Future>(fut: F, level: tracing::Level, spans: FmtSpan) -> (F::Output, String) {
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_span_events(spans)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let output = Box::pin(fut).with_subscriber(subscriber).await;
    let text = String::from_utf8_lossy(&sink.0.lock().unwrap_or_else(PoisonError::into_inner))
        .into_owned();
    (output, text)
}
