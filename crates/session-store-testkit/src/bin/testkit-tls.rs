//! What `cargo xtask certs` and `cargo xtask mongod up --tls|--mtls|--x509|--scram` run,
//! so that xtask itself needs neither rcgen nor the MongoDB driver:
//!
//! - `certs DIR`: generate the test certificate set into DIR;
//! - `mongod-args MODE DIR`: print the mongod arguments for MODE, one per line;
//! - `prepare MODE PORT DIR`: create the users MODE needs on a fresh mongod at PORT, then
//!   print the connection string a client uses.
//!
//! MODE is `tls`, `mtls`, `x509` or `scram`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use session_store_testkit::certs::CertSet;
use session_store_testkit::mongod::{client_uri, create_users, security_args, Security};

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
        _ => bail!("usage: testkit-tls certs DIR | mongod-args MODE DIR | prepare MODE PORT DIR"),
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testkit-tls: {e:#}");
            ExitCode::FAILURE
        }
    }
}
