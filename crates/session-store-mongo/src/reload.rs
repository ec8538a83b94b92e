//! Following rotated TLS files
//! ([`MongoBackendBuilder::tls_reload`](crate::MongoBackendBuilder::tls_reload)). The
//! driver reads the client certificate and the CA file once, when a client is made, and
//! every connection of that client's pool uses what it read. So when the files change,
//! a new client is made: after the same checks as at start-up (the files, then a
//! connection with them), it becomes the one new operations use; operations under way
//! finish on the old one, which closes after the last of them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mongodb::options::ClientOptions;
use mongodb::Client;

use crate::backend::MongoBackend;
use crate::builder::check_options;
use crate::diagnosis::enabled;
use crate::error::MongoError;
use crate::tls;

/// The TLS files a client made with `options` reads.
fn files(options: &ClientOptions) -> Vec<PathBuf> {
    enabled(options)
        .map(|t| {
            [t.cert_key_file_path.clone(), t.ca_file_path.clone()]
                .into_iter()
                .flatten()
                .collect()
        })
        .unwrap_or_default()
}

/// What the files hold now (`None` for one that cannot be read, e.g. mid-rename).
fn read(files: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    files.iter().map(|f| std::fs::read(f).ok()).collect()
}

/// A client made with the files as they are now, once a connection with it succeeded.
async fn replacement(options: &ClientOptions, timeout: Duration) -> Result<Client, MongoError> {
    tls::check_files(options)?;
    check_options(options, timeout).await?;
    Client::with_options(options.clone()).map_err(|e| crate::error::client_error(e, options))
}

impl MongoBackend {
    /// Checks the TLS files of `options` (those this backend's client was made with)
    /// every `period` and replaces the client when they change; see the module docs.
    pub(crate) fn start_tls_reload(&self, options: ClientOptions, period: Duration) {
        let files = files(&options);
        if files.is_empty() {
            tracing::debug!("tls_reload: the connection uses no TLS file; nothing to follow");
            return;
        }
        // Weak: the task must not keep the backend alive (dropping it stops the task).
        let backend = Arc::downgrade(&self.inner);
        let timeout = self.timeout();
        let task = tokio::spawn(async move {
            let mut applied = read(&files);
            let mut refused = None;
            loop {
                tokio::time::sleep(period).await;
                let now = read(&files);
                if now == applied || refused.as_ref() == Some(&now) {
                    continue;
                }
                let outcome = replacement(&options, timeout).await;
                let Some(inner) = backend.upgrade() else {
                    return;
                };
                match outcome {
                    Ok(client) => {
                        MongoBackend { inner }.replace_client(client);
                        applied = now;
                        refused = None;
                        tracing::info!(
                            files = ?files,
                            "MongoDB TLS files changed: new operations use a client made with them"
                        );
                    }
                    Err(e) => {
                        refused = Some(now);
                        tracing::warn!(
                            files = ?files,
                            error = %session_store_core::error_chain(&e),
                            "MongoDB TLS files changed but cannot be used; the current client keeps serving"
                        );
                    }
                }
            }
        });
        self.inner.tls_reload.set(task.abort_handle());
    }
}
