//! Raw connections for the cases that need more control than an HTTP client gives: a TLS
//! connection that sends nothing, part of a request, or a request a byte at a time; a
//! client that keeps its TLS sessions for resumption; plain TCP from a chosen source
//! address; and the sockets a server process holds, read from `/proc`.
//!
//! Blocking (std sockets, rustls' `StreamOwned`): run them on `spawn_blocking`.

use std::io::{ErrorKind as IoErrorKind, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, StreamOwned};

use super::*;

/// How long connecting and a TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A TLS connection to a server under test.
pub(crate) type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A rustls client configuration trusting `ca`, presenting `identity` (certificate and
/// key in one PEM) when given. It keeps TLS sessions for resumption (rustls' default,
/// 256 in memory): every connection made with one `Arc` of it may resume an earlier one.
pub(crate) fn tls_config(ca: &Path, identity: Option<&Path>) -> Arc<ClientConfig> {
    let build = || -> anyhow::Result<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)? {
            roots.add(cert?)?;
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        Ok(match identity {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let chain = CertificateDer::pem_file_iter(pem)?.collect::<Result<Vec<_>, _>>()?;
                builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(pem)?)?
            }
        })
    };
    Arc::new(build().unwrap_or_else(|e| panic!("a TLS client configuration: {e:#}")))
}

/// The address of a server under test, from its base URL.
pub(crate) fn server_addr(server: &ServerUnderTest) -> SocketAddr {
    let host = server
        .base_url()
        .split("://")
        .nth(1)
        .expect("a base URL with a scheme");
    host.parse()
        .unwrap_or_else(|e| panic!("{host} is not an address: {e}"))
}

/// Connects to `addr` and completes the TLS handshake.
///
/// # Errors
///
/// When connecting or the handshake fails (as text, for messages).
pub(crate) fn tls_connect(config: &Arc<ClientConfig>, addr: SocketAddr) -> Result<Tls, String> {
    let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    tcp.set_read_timeout(Some(CONNECT_TIMEOUT))
        .and_then(|()| tcp.set_write_timeout(Some(CONNECT_TIMEOUT)))
        .map_err(|e| format!("socket time-outs: {e}"))?;
    let name = ServerName::from(addr.ip());
    let conn = ClientConnection::new(Arc::clone(config), name)
        .map_err(|e| format!("a TLS client connection: {e}"))?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| format!("TLS handshake: {e}"))?;
    }
    Ok(tls)
}

/// One HTTP/1.1 response read off a raw connection.
#[derive(Debug)]
pub(crate) struct RawReply {
    pub(crate) status: u16,
    pub(crate) body: String,
}

/// Reads one response (head, then `Content-Length` bytes of body, or up to the end of the
/// connection without one) from `stream`.
///
/// # Errors
///
/// When the connection fails or ends before a whole response.
pub(crate) fn read_response(stream: &mut impl std::io::Read) -> Result<RawReply, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "the connection ended before a response ({} bytes: {:?})",
                    buf.len(),
                    String::from_utf8_lossy(&buf)
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading a response: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    let mut body = buf[head_end..].to_vec();
    loop {
        if length.is_some_and(|n| body.len() >= n) {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) if length.is_none() => break,
            Ok(0) => return Err("the connection ended inside a response body".into()),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if length.is_none() && e.kind() == IoErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("reading a response body: {e}")),
        }
    }
    Ok(RawReply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `GET path` over a new TLS connection made with `config`: the response and how the
/// handshake went (resumed or full).
///
/// # Errors
///
/// When the handshake is refused or no response arrives (as text).
pub(crate) fn tls_get(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    path: &str,
) -> Result<(RawReply, Option<HandshakeKind>), String> {
    let mut tls = tls_connect(config, addr)?;
    let kind = tls.conn.handshake_kind();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| format!("sending GET {path}: {e} (handshake {kind:?})"))?;
    let reply = read_response(&mut tls).map_err(|e| format!("{e} (handshake {kind:?})"))?;
    Ok((reply, kind))
}

/// A plain-text HTTP/1.1 `GET path` to `to`, from `from` (a source address and port of
/// the caller's choosing; port 0 for any).
///
/// # Errors
///
/// When connecting fails or no response arrives (as text).
pub(crate) async fn plain_get_from(
    from: SocketAddrV4,
    to: SocketAddr,
    path: &str,
) -> Result<RawReply, String> {
    let connect = async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::V4(from))?;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(to))
            .await
            .map_err(|_| std::io::Error::new(IoErrorKind::TimedOut, "connect timed out"))??;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        Ok::<_, std::io::Error>(stream)
    };
    let mut tcp = connect
        .await
        .map_err(|e| format!("connecting from {from} to {to}: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n");
    tokio::task::spawn_blocking(move || {
        tcp.write_all(request.as_bytes())
            .map_err(|e| format!("sending a request from {from} to {to}: {e}"))?;
        read_response(&mut tcp).map_err(|e| format!("from {from} to {to}: {e}"))
    })
    .await
    .unwrap_or_else(|e| Err(format!("the request task failed: {e}")))
}

/// A TCP socket a process holds, from `/proc/<pid>/net/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcSocket {
    pub(crate) local: SocketAddrV4,
    pub(crate) remote: SocketAddrV4,
    /// Listening (rather than connected).
    pub(crate) listening: bool,
}

/// The IPv4 TCP sockets process `pid` holds open (its file descriptors matched to the
/// kernel's socket table by inode).
pub(crate) fn process_sockets(pid: u32) -> Vec<ProcSocket> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|entry| {
                let link = std::fs::read_link(entry.ok()?.path()).ok()?;
                let link = link.to_string_lossy();
                Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
            })
            .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let addr = |text: &str| -> Option<SocketAddrV4> {
        let (ip, port) = text.split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?;
        // The kernel prints the address in host (little-endian) order.
        let ip = Ipv4Addr::from(ip.swap_bytes());
        Some(SocketAddrV4::new(ip, u16::from_str_radix(port, 16).ok()?))
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode = fields.get(9)?;
            if !inodes.contains(*inode) {
                return None;
            }
            Some(ProcSocket {
                local: addr(fields.get(1)?)?,
                remote: addr(fields.get(2)?)?,
                listening: *fields.get(3)? == "0A",
            })
        })
        .collect()
}

/// The process id of a server under test.
pub(crate) fn server_pid(server: &ServerUnderTest) -> u32 {
    server
        .child()
        .as_ref()
        .map(std::process::Child::id)
        .expect("the server runs")
}
