//! Serving TLS connections safely: a handshake time-out, a cap on open connections, and
//! accept errors (such as running out of file descriptors) logged and retried, so idle or
//! slow clients cannot stop the server or keep others out.
//!
//! Shared by the examples that accept TLS connections themselves (Axum, and the HTTPS
//! front of Rocket), so that each can be copied alone; `cargo xtask ci` checks the copies
//! are identical. Change it in examples/axum and copy it to the others.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::client_cert::ClientCert;

/// How long a client may take to complete the TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to send a request's headers once connected.
pub(crate) const REQUEST_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further clients wait in the kernel's backlog.
pub(crate) const MAX_CONNECTIONS: usize = 1024;
/// The pause after an accept error before accepting again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Accepts TLS connections on `listener` forever and hands each established one, with
/// its verified client certificate if any, to `serve` on a task of its own. A handshake
/// that does not finish within [`HANDSHAKE_TIMEOUT`] is dropped; at most
/// [`MAX_CONNECTIONS`] are open at once.
pub(crate) async fn serve_tls<S, F>(listener: TcpListener, tls: rustls::ServerConfig, serve: S)
where
    S: Fn(TlsStream<TcpStream>, Option<ClientCert>, SocketAddr) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was
                // accepted: others may close; try again shortly.
                tracing::warn!(error = %e, "accepting a connection failed; retrying");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let (acceptor, serve) = (acceptor.clone(), serve.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake not completed in time");
                    return;
                }
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|der| ClientCert::from_der(der));
            serve(stream, cert, peer).await;
        });
    }
}
