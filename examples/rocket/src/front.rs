//! HTTPS for the Rocket example, terminated in front of Rocket. Rocket 0.5's own TLS
//! listener has no handshake or request-header time-out, so idle connections would hold
//! its files and tasks for ever; here each connection gets `https.rs`'s limits and is
//! then relayed, byte for byte, to Rocket on a loopback port nothing else is told about.
//!
//! Rocket cannot see the TLS session, so the front records each connection's client
//! certificate under the local port of its relayed connection, and the app looks it up
//! by the peer address Rocket reports ([`ClientCerts::of`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::client_cert::ClientCert;
use crate::https;

/// The client certificates of the connections the front relays, by the local port of
/// the relayed connection.
#[derive(Clone, Default)]
pub(crate) struct ClientCerts(Arc<Mutex<HashMap<u16, ClientCert>>>);

impl ClientCerts {
    /// The certificate of the client whose connection reached Rocket from `peer`; `None`
    /// for a connection the front did not open, or a client without a certificate.
    pub(crate) fn of(&self, peer: Option<SocketAddr>) -> Option<ClientCert> {
        let peer = peer.filter(|p| p.ip().is_loopback())?;
        self.lock().get(&peer.port()).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u16, ClientCert>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Serves TLS on `listener` and relays each connection to Rocket at `rocket`.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    rocket: SocketAddr,
    certs: ClientCerts,
) {
    https::serve_tls(listener, tls, move |mut client, cert, peer| {
        let certs = certs.clone();
        async move {
            // The request's first bytes must come in time, as with the other examples'
            // request-header time-out.
            let mut first = vec![0; 16 * 1024];
            let n =
                match tokio::time::timeout(https::REQUEST_HEADER_TIMEOUT, client.read(&mut first))
                    .await
                {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => return,
                };
            let mut upstream = match TcpStream::connect(rocket).await {
                Ok(upstream) => upstream,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "cannot reach Rocket behind the HTTPS front");
                    return;
                }
            };
            let port = upstream.local_addr().map(|a| a.port()).ok();
            if let (Some(port), Some(cert)) = (port, cert) {
                certs.lock().insert(port, cert);
            }
            if upstream.write_all(&first[..n]).await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            if let Some(port) = port {
                certs.lock().remove(&port);
            }
        }
    })
    .await;
}
