//! The server under test: a contract server binary as a child process, and its replies.

use super::*;

/// One HTTP response, read in full.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    /// The request, e.g. `GET /counter` (for messages).
    pub(crate) request: String,
    /// The status.
    pub(crate) status: StatusCode,
    /// All headers.
    pub(crate) headers: HeaderMap,
    /// The body as text.
    pub(crate) text: String,
    /// The body as JSON, when it is JSON.
    pub(crate) json: Option<Value>,
    /// Every `Set-Cookie` header that parsed, in order.
    pub(crate) set_cookies: Vec<SetCookie>,
}

impl Reply {
    /// The last `Set-Cookie` for `name` (what a browser keeps).
    pub(crate) fn cookie(&self, name: &str) -> Option<&SetCookie> {
        self.set_cookies.iter().rev().find(|c| c.name == name)
    }

    /// The last `Set-Cookie` for the session cookie, [`COOKIE_NAME`].
    pub(crate) fn sid(&self) -> Option<&SetCookie> {
        self.cookie(COOKIE_NAME)
    }

    /// How many `Set-Cookie` headers there are (parsed or not).
    pub(crate) fn set_cookie_count(&self) -> usize {
        self.headers.get_all(SET_COOKIE).iter().count()
    }

    /// The header `name` as text, when present and visible ASCII.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {} {}",
            self.request,
            self.status.as_u16(),
            self.text.trim()
        )?;
        for c in self.headers.get_all(SET_COOKIE) {
            write!(
                f,
                " [Set-Cookie: {}]",
                String::from_utf8_lossy(c.as_bytes())
            )?;
        }
        if let Some(r) = self.header(RETRY_AFTER.as_str()) {
            write!(f, " [Retry-After: {r}]")?;
        }
        Ok(())
    }
}

/// A contract server binary running as a child process on a free loopback port, with
/// its output in a log file. Killed on drop.
#[derive(Debug)]
pub(crate) struct ServerUnderTest {
    pub(crate) bin: PathBuf,
    pub(crate) child: Mutex<Option<Child>>,
    pub(crate) base_url: String,
    pub(crate) dir: PathBuf,
    pub(crate) http: reqwest::Client,
    pub(crate) https: bool,
}

/// The suite's HTTP client settings: no proxy, no redirects, a liveness timeout.
pub(crate) fn client_builder() -> reqwest::ClientBuilder {
    // reqwest is built without a default TLS provider (no aws-lc); even a plain-HTTP
    // client needs one installed. Ignored when one already is.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
}

/// How the suite's client reaches a server over HTTPS: the CA it trusts, and the client
/// certificate (with key) it presents, if any.
#[derive(Debug, Clone)]
pub(crate) struct HttpsClient {
    /// The CA that signed the server's certificate.
    pub(crate) ca: PathBuf,
    /// A PEM with the client certificate and key, for mutual TLS.
    pub(crate) identity: Option<PathBuf>,
}

impl HttpsClient {
    pub(crate) fn http_client(&self) -> anyhow::Result<reqwest::Client> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca)? {
            roots.add(cert?)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let chain = CertificateDer::pem_file_iter(pem)?.collect::<Result<Vec<_>, _>>()?;
                let key = PrivateKeyDer::from_pem_file(pem)?;
                builder.with_client_auth_cert(chain, key)?
            }
        };
        // `tls_info`: responses carry the server certificate their connection got.
        Ok(client_builder()
            .tls_backend_preconfigured(config)
            .tls_info(true)
            .build()?)
    }
}

impl ServerUnderTest {
    /// Starts `bin` with `MONGODB_URI=mongodb_uri`, `MONGO_DB=database`,
    /// `HOST=127.0.0.1`, `PORT=<free port>`, `RUST_LOG=info`,
    /// `COOKIE_KEY=`[`TEST_COOKIE_KEY`] and the case's `env` (other contract variables
    /// inherited from the test's environment are removed), reached over HTTPS with the
    /// case's `https` client when given (the server's TLS variables must then be in
    /// `env`), under the case's open-file limit, and waits up to 30 s until `GET /health`
    /// answers 200.
    ///
    /// # Errors
    ///
    /// When the binary cannot run, exits first, or does not get ready in time (the error
    /// quotes its log), or when the client's TLS files are unusable.
    pub(crate) async fn start(
        bin: &Path,
        mongodb_uri: &str,
        database: &str,
        case: &Case,
    ) -> anyhow::Result<Self> {
        let https = case.https.as_ref();
        let env = &case.env;
        let http = match https {
            None => client_builder()
                .build()
                .context("cannot build the HTTP client")?,
            Some(tls) => tls.http_client().context("cannot build the HTTPS client")?,
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = free_port()?;
            let server = Self::spawn(
                bin,
                case.fd_limit,
                port,
                http.clone(),
                https.is_some(),
                |cmd| {
                    cmd.env("MONGODB_URI", mongodb_uri)
                        .env("MONGO_DB", database)
                        .env("HOST", "127.0.0.1")
                        .env("PORT", port.to_string())
                        .env("RUST_LOG", "info")
                        .env("COOKIE_KEY", TEST_COOKIE_KEY)
                        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
                },
            )?;
            match server.wait_ready().await {
                Ok(()) => return Ok(server),
                // The free port was taken before the server bound it: try another.
                Err(e)
                    if attempts < 3
                        && server
                            .log()
                            .to_lowercase()
                            .contains("address already in use") =>
                {
                    eprintln!(
                        "{}: port {port} was taken, trying another: {e:#}",
                        bin.display()
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `bin` with `env` (and `HOST=127.0.0.1`, a free `PORT`) until it exits, for
    /// start-ups that must fail; returns its exit status and its whole output.
    ///
    /// # Errors
    ///
    /// When it cannot run, or is still running after `timeout` (then it is killed).
    pub(crate) async fn run_to_exit(
        bin: &Path,
        env: &[(&'static str, String)],
        timeout: Duration,
    ) -> anyhow::Result<(ExitStatus, String)> {
        let port = free_port()?;
        let http = client_builder().build()?;
        let server = Self::spawn(bin, None, port, http, false, |cmd| {
            cmd.env("HOST", "127.0.0.1")
                .env("PORT", port.to_string())
                .env("COOKIE_KEY", TEST_COOKIE_KEY)
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        })?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = server.exit_status()? {
                return Ok((status, server.log()));
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} was still running after {timeout:?} (expected it to give up); log \
                     tail:\n{}",
                    bin.display(),
                    server.log_tail(TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts `bin` (under `ulimit -n fd_limit` when given) with its output in a log file.
    pub(crate) fn spawn(
        bin: &Path,
        fd_limit: Option<u32>,
        port: u16,
        http: reqwest::Client,
        https: bool,
        configure: impl FnOnce(&mut Command),
    ) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(unique_name("server"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let log_path = dir.join("server.log");
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut cmd = match fd_limit {
            None => Command::new(bin),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\""))
                    .arg(bin);
                sh
            }
        };
        for var in CONTRACT_VARS {
            cmd.env_remove(var);
        }
        // Rocket reads its own ROCKET_* settings from the environment.
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("ROCKET_") {
                cmd.env_remove(var);
            }
        }
        configure(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e).with_context(|| {
                    format!("cannot run the server under test {}", bin.display())
                });
            }
        };
        Ok(Self {
            bin: bin.to_owned(),
            child: Mutex::new(Some(child)),
            base_url: format!(
                "{}://127.0.0.1:{port}",
                if https { "https" } else { "http" }
            ),
            dir,
            http,
            https,
        })
    }

    pub(crate) async fn wait_ready(&self) -> anyhow::Result<()> {
        let url = format!("{}/health", self.base_url);
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last: String;
        loop {
            if let Some(status) = self.exit_status()? {
                bail!(
                    "the server under test {} exited with {status} before GET /health answered \
                     200; log tail:\n{}",
                    self.bin.display(),
                    self.log_tail(TAIL_LINES)
                );
            }
            match self
                .http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                // Still ours: a server that failed to bind would have exited.
                Ok(r) if r.status() == StatusCode::OK && self.is_running() => return Ok(()),
                Ok(r) => last = format!("status {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                bail!(
                    "the server under test {} did not answer GET {url} with 200 within \
                     {READY_TIMEOUT:?} (last: {last}); log tail:\n{}",
                    self.bin.display(),
                    self.log_tail(TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn exit_status(&self) -> anyhow::Result<Option<ExitStatus>> {
        match self.child().as_mut() {
            Some(child) => child
                .try_wait()
                .context("cannot read the server's process status"),
            None => Ok(None),
        }
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&self) -> bool {
        self.child()
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the process (SIGKILL) and reaps it. Also done on drop.
    pub(crate) fn kill(&self) {
        if let Some(mut child) = self.child().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The log file (the server's stdout and stderr).
    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The whole log.
    pub(crate) fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// The last `lines` lines of the log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.log_path(), lines)
    }

    /// `GET path`, with `Cookie: sid=<sid>` when given.
    ///
    /// # Errors
    ///
    /// When no response arrives within 30 s (the error quotes the server's log).
    pub(crate) async fn get(&self, path: &str, sid: Option<&str>) -> anyhow::Result<Reply> {
        self.request(Method::GET, path, sid, None).await
    }

    /// `POST path` with `body` as `application/json` (sent as is, so it may be
    /// malformed), with `Cookie: sid=<sid>` when given.
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    pub(crate) async fn post(
        &self,
        path: &str,
        sid: Option<&str>,
        body: &str,
    ) -> anyhow::Result<Reply> {
        self.request(Method::POST, path, sid, Some(body)).await
    }

    /// Any request: `body` is sent as `application/json` when given.
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        sid: Option<&str>,
        body: Option<&str>,
    ) -> anyhow::Result<Reply> {
        let request = format!("{method} {path}");
        let mut builder = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        if let Some(sid) = sid {
            builder = builder.header(COOKIE, format!("{COOKIE_NAME}={sid}"));
        }
        if let Some(body) = body {
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_owned());
        }
        let fail = |e: reqwest::Error| {
            let why = if e.is_timeout() {
                format!("no response within {REQUEST_TIMEOUT:?}")
            } else {
                format!("request failed: {e}")
            };
            anyhow::anyhow!(
                "{request}: {why} (server {}); log tail:\n{}",
                if self.is_running() {
                    "still running"
                } else {
                    "has exited"
                },
                self.log_tail(TAIL_LINES)
            )
        };
        let response = builder.send().await.map_err(fail)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(fail)?;
        let set_cookies = headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| SetCookie::parse(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        Ok(Reply {
            request,
            status,
            json: serde_json::from_str(&text).ok(),
            headers,
            text,
            set_cookies,
        })
    }
}

impl Drop for ServerUnderTest {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- {} log tail ---\n{}",
                self.bin.display(),
                self.log_tail(TAIL_LINES)
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
