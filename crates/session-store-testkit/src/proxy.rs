//! A TCP proxy on loopback in front of a mongod that loses one exchange on demand: the
//! request (the server never sees it) or the reply (the server ran the command, the
//! client never hears it). What a network failure does to a write, made deterministic.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use mongodb::options::{ClientOptions, ServerAddress};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the proxy loses, once, on the first connection whose request contains a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The request is dropped and the connection closed: the command never ran.
    LoseRequest(Vec<u8>),
    /// The request is passed on, and the connection closed when the reply comes back,
    /// unread: the command ran, its outcome unknown to the client.
    LoseReply(Vec<u8>),
    /// The request is passed on, and its reply held this long: the command ran at once,
    /// the client hears of it later.
    DelayReply(Vec<u8>, std::time::Duration),
}

impl Fault {
    fn pattern(&self) -> &[u8] {
        match self {
            Self::LoseRequest(p) | Self::LoseReply(p) | Self::DelayReply(p, _) => p,
        }
    }
}

/// The bytes of a BSON string field named `name` (an element of type 0x02): in a request,
/// the command name, for example `command_field("update")`.
#[must_use]
pub fn command_field(name: &str) -> Vec<u8> {
    let mut out = vec![0x02];
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out
}

/// The proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    armed: Arc<Mutex<Option<Fault>>>,
    fired: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    ///
    /// # Errors
    ///
    /// When no loopback port can be bound.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the proxy on loopback")?;
        let addr = listener.local_addr()?;
        let armed = Arc::new(Mutex::new(None::<Fault>));
        let fired = Arc::new(AtomicBool::new(false));
        let (armed_in, fired_in) = (Arc::clone(&armed), Arc::clone(&fired));
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(relay(
                    client,
                    server,
                    Arc::clone(&armed_in),
                    Arc::clone(&fired_in),
                ));
            }
        });
        Ok(Self {
            addr,
            armed,
            fired,
            accept,
        })
    }

    /// A proxy in front of the first host of `uri`, and client options that reach that
    /// server through it (a direct connection: never the addresses a replica set reports).
    ///
    /// # Errors
    ///
    /// When `uri` does not parse, names no TCP host, or the proxy cannot listen.
    pub async fn in_front_of(uri: &str) -> anyhow::Result<(Self, ClientOptions)> {
        let mut options = ClientOptions::parse(uri).await?;
        let upstream = match options.hosts.first() {
            Some(ServerAddress::Tcp { host, port }) => {
                tokio::net::lookup_host((host.as_str(), port.unwrap_or(27017)))
                    .await?
                    .next()
                    .context("the host resolves to no address")?
            }
            other => anyhow::bail!("the fault proxy needs a TCP host, got {other:?}"),
        };
        let proxy = Self::start(upstream).await?;
        options.hosts = vec![ServerAddress::Tcp {
            host: "127.0.0.1".into(),
            port: Some(proxy.addr().port()),
        }];
        options.direct_connection = Some(true);
        options.repl_set_name = None;
        Ok((proxy, options))
    }

    /// The proxy's address (`127.0.0.1:port`).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Loses the next exchange `fault` names.
    pub fn arm(&self, fault: Fault) {
        self.fired.store(false, Ordering::SeqCst);
        *self.armed.lock().unwrap_or_else(PoisonError::into_inner) = Some(fault);
    }

    /// Whether the armed fault happened.
    #[must_use]
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies one connection both ways until either side closes or the armed fault fires.
async fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    armed: Arc<Mutex<Option<Fault>>>,
    fired: Arc<AtomicBool>,
) {
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let lose_reply = AtomicBool::new(false);
    let delay_reply = Mutex::new(None::<std::time::Duration>);
    let up = async {
        let mut buf = vec![0_u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            let fault = {
                let mut slot = armed.lock().unwrap_or_else(PoisonError::into_inner);
                match slot.as_ref() {
                    Some(f) if contains(chunk, f.pattern()) => slot.take(),
                    _ => None,
                }
            };
            match fault {
                Some(Fault::LoseRequest(_)) => {
                    fired.store(true, Ordering::SeqCst);
                    return;
                }
                Some(Fault::LoseReply(_)) => lose_reply.store(true, Ordering::SeqCst),
                Some(Fault::DelayReply(_, delay)) => {
                    *delay_reply.lock().unwrap_or_else(PoisonError::into_inner) = Some(delay);
                }
                None => {}
            }
            if server_write.write_all(chunk).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let mut buf = vec![0_u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if lose_reply.load(Ordering::SeqCst) {
                fired.store(true, Ordering::SeqCst);
                return;
            }
            let delay = delay_reply
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
                fired.store(true, Ordering::SeqCst);
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Either direction ending closes both: the client sees the connection drop.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
