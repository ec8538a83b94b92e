//! What `cargo xtask certs`, `cargo xtask mongod up --tls|--mtls|--x509|--scram` and the
//! replica-set topologies run, so that xtask itself needs neither rcgen nor the MongoDB
//! driver:
//!
//! - `certs DIR`: generate the test certificate set into DIR;
//! - `mongod-args MODE DIR`: print the mongod arguments for MODE, one per line;
//! - `prepare MODE PORT DIR`: create the users MODE needs on a fresh mongod at PORT, then
//!   print the connection string a client uses;
//! - `initiate SET PORT...`: make the mongods on these loopback ports (started with
//!   `--replSet SET`) one replica set, wait for a primary, print its connection string.
//!
//! MODE is `tls`, `mtls`, `x509` or `scram`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use session_store_testkit::certs::CertSet;
use session_store_testkit::mongod::{
    client_uri, create_users, is_writable_primary, security_args, Security,
};

fn mode(name: &str) -> anyhow::Result<Security> {
    Ok(match name {
        "tls" => Security::Tls,
        "mtls" => Security::MutualTls,
        "x509" => Security::X509,
        "scram" => Security::Scram,
        other => bail!("unknown mode {other:?}: use tls, mtls, x509 or scram"),
    })
}

async fn run(args: &[String]) -> anyhow::Result<()> {
    match args {
        [cmd, dir] if cmd == "certs" => {
            let set = CertSet::generate(&PathBuf::from(dir))?;
            println!("{}", set.dir.display());
        }
        [cmd, m, dir] if cmd == "mongod-args" => {
            let certs = CertSet::at(&PathBuf::from(dir))?;
            for arg in security_args(mode(m)?, &certs) {
                println!("{}", arg.to_string_lossy());
            }
        }
        [cmd, m, port, dir] if cmd == "prepare" => {
            let security = mode(m)?;
            let port: u16 = port.parse().context("PORT is not a port number")?;
            let certs = CertSet::at(&PathBuf::from(dir))?;
            create_users(port, security, &certs).await?;
            println!("{}", client_uri(port, security, &certs));
        }
        [cmd, set, ports @ ..] if cmd == "initiate" && !ports.is_empty() => {
            println!("{}", initiate(set, ports).await?);
        }
        _ => bail!(
            "usage: testkit-helper certs DIR | mongod-args MODE DIR | prepare MODE PORT DIR | initiate SET PORT..."
        ),
    }
    Ok(())
}

/// Replica-set members of 5.0+ spend 15 s in quiesce mode on SIGTERM; tests stop them
/// often, so the wait is cut to 1 s where the server knows the parameter. Asked of the
/// server (`getParameter`), not guessed from its version: 4.4 has no such parameter.
async fn shorten_signalled_shutdown(host: &str) -> anyhow::Result<()> {
    use mongodb::bson::doc;
    const NAME: &str = "shutdownTimeoutMillisForSignaledShutdown";
    let client =
        mongodb::Client::with_uri_str(format!("mongodb://{host}/?directConnection=true")).await?;
    let admin = client.database("admin");
    let known = admin
        .run_command(doc! { "getParameter": 1, NAME: 1 })
        .await
        .is_ok();
    if known {
        admin
            .run_command(doc! { "setParameter": 1, NAME: 1000 })
            .await
            .with_context(|| format!("setParameter {NAME} on {host} failed"))?;
    } else {
        eprintln!("testkit-helper: {host} has no {NAME} (before 5.0): shutdown keeps its default");
    }
    client.shutdown().await;
    Ok(())
}

/// `replSetInitiate` on the first member, then waits (up to 60 s) for a writable primary.
async fn initiate(set: &str, ports: &[String]) -> anyhow::Result<String> {
    use mongodb::bson::{doc, Document};
    let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let members: Vec<Document> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| doc! { "_id": i as i32, "host": h })
        .collect();
    for host in &hosts {
        shorten_signalled_shutdown(host).await?;
    }
    let first =
        mongodb::Client::with_uri_str(format!("mongodb://{}/?directConnection=true", hosts[0]))
            .await?;
    first
        .database("admin")
        .run_command(doc! {
            "replSetInitiate": { "_id": set, "members": members, "settings": { "electionTimeoutMillis": 2000 } }
        })
        .await
        .context("replSetInitiate failed")?;
    first.shutdown().await;
    let uri = format!("mongodb://{}/?replicaSet={set}", hosts.join(","));
    let client = mongodb::Client::with_uri_str(&uri).await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if is_writable_primary(&client).await {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!("replica set {set} elected no primary within 60 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    client.shutdown().await;
    Ok(uri)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testkit-helper: {e:#}");
            ExitCode::FAILURE
        }
    }
}
