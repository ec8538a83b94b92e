//! `cargo xtask bench`: builds the harness and the example servers in release mode,
//! fetches wrk (Debian's package, unpacked under `~/.cache/session-store/wrk`, no root
//! needed) and the Express comparison app's npm packages, starts a throwaway mongod and
//! runs `session-store-bench`, which writes `target/bench/latest.md`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{ensure, Context as _, Result};

use crate::framework::{Framework, CONTRACT_PACKAGE};
use crate::mongod::DEFAULT_VERSION;
use crate::{
    cache_dir, cargo, cargo_target_dir, project_root, run_checked, with_deployment, with_mongod,
    Topology,
};

/// `wrk` from PATH, else Debian's package and its LuaJIT library unpacked into the cache
/// (`apt-get download` + `dpkg-deb -x`) behind a wrapper that sets the library path.
fn wrk() -> Result<PathBuf> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok("wrk".into());
    }
    let dir = cache_dir()?.join("wrk");
    let _ = std::fs::remove_dir_all(&dir);
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs)?;
    eprintln!(
        "xtask: fetching wrk from Debian's packages into {}",
        dir.display()
    );
    run_checked(
        Command::new("apt-get")
            .args(["download", "-q", "wrk", "libluajit-5.1-2"])
            .current_dir(&debs),
        "`apt-get download wrk libluajit-5.1-2` (Debian's package archive)",
    )?;
    let root = dir.join("root");
    for deb in std::fs::read_dir(&debs)? {
        let deb = deb?.path();
        run_checked(
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
            &format!("dpkg-deb -x {}", deb.display()),
        )?;
    }
    let script = format!(
        "#!/bin/sh\n# Written by cargo xtask bench: Debian's wrk with its LuaJIT library.\nLD_LIBRARY_PATH='{}'${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}} exec '{}' \"$@\"\n",
        root.join("usr/lib/x86_64-linux-gnu").display(),
        root.join("usr/bin/wrk").display()
    );
    let bin = dir.join("wrk");
    std::fs::write(&bin, script)?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    }
    let out = Command::new(&bin).arg("--version").output()?;
    // wrk --version prints its banner and exits 1.
    ensure!(
        String::from_utf8_lossy(&out.stdout).contains("wrk"),
        "the unpacked wrk does not run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(bin)
}

/// Installs the Express comparison app's packages (`npm ci`, from its lockfile); returns
/// its `server.js`.
fn express() -> Result<PathBuf> {
    let dir = project_root().join("xtask/bench/express");
    eprintln!("xtask: installing the Express + connect-mongo comparison app (npm ci)");
    run_checked(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel", "error"])
            .current_dir(&dir),
        "npm ci in xtask/bench/express",
    )?;
    Ok(dir.join("server.js"))
}

/// Builds the Rust peer (tower-sessions-mongodb-store 0.11, `xtask/bench/peer`) from its
/// own lockfile into its own target directory; returns the binary.
fn peer() -> Result<PathBuf> {
    let target = cache_dir()?.join("target-peer");
    eprintln!("xtask: building the Rust peer (tower-sessions-mongodb-store 0.11)");
    run_checked(
        cargo()
            .args(["build", "--release", "--locked", "--manifest-path"])
            .arg(project_root().join("xtask/bench/peer/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target),
        "building xtask/bench/peer",
    )?;
    Ok(target.join("release").join("bench-peer"))
}

pub(crate) fn bench(options: &crate::cli::Bench) -> Result<bool> {
    let store_only = options.store_only();
    // Build first, so the build does not run while mongod waits.
    let mut build = cargo();
    build.args(["build", "--release", "--package", "session-store-bench"]);
    if !store_only {
        build.args(["--package", CONTRACT_PACKAGE]);
    }
    if !build
        .status()
        .context("cannot build the benchmark")?
        .success()
    {
        return Ok(false);
    }
    let mut http_args: Vec<String> = Vec::new();
    if !store_only {
        let target = cargo_target_dir();
        // The floor: the contract servers' MongoDB work, raw driver, no session library.
        let floor = target.join("release").join("bench-floor");
        http_args.extend(["--server".to_owned(), format!("floor={}", floor.display())]);
        for (name, package) in Framework::ALL.map(|f| (f.name(), f.contract_server())) {
            let bin = target.join("release").join(package);
            http_args.extend(["--server".to_owned(), format!("{name}={}", bin.display())]);
        }
        // The same servers with requests on a session serialized (a lease per request).
        for (name, package) in Framework::ALL.map(|f| (f.name(), f.contract_server())) {
            let bin = target.join("release").join(package);
            http_args.extend([
                "--server".to_owned(),
                format!("{name}+serialize={},SESSION_SERIALIZE=1", bin.display()),
            ]);
        }
        http_args.extend([
            "--server".to_owned(),
            format!("peer={}", peer()?.display()),
            "--server".to_owned(),
            format!("express={}", express()?.display()),
            "--wrk".to_owned(),
            wrk()?.display().to_string(),
        ]);
    }
    let out = project_root()
        .join("target")
        .join("bench")
        .join("latest.md");
    let run = |server: &crate::Deployment, extra: &[String]| -> Result<bool> {
        let mut bench = cargo();
        bench
            .args([
                "run",
                "--quiet",
                "--release",
                "--package",
                "session-store-bench",
                "--",
            ])
            .args(["--uri", &server.uri()])
            .arg("--out")
            .arg(&out)
            .args(&http_args)
            .args(options.args())
            .args(extra);
        Ok(crate::wait_serving(&mut bench, "the benchmark")?.success())
    };
    if !with_mongod(|server| run(server, &[]))? {
        return Ok(false);
    }
    let parts = options.replica_set_parts();
    if parts.is_empty() {
        return Ok(true);
    }
    // The Axum contract server with the session cache, which needs a replica set: one instance,
    // and four on one database (each watching the change stream, wrk's connections
    // shared out among them).
    let cached = if store_only {
        Vec::new()
    } else {
        let bin = cargo_target_dir()
            .join("release")
            .join(Framework::Axum.contract_server());
        vec![
            "--server".to_owned(),
            format!("axum+cache={},SESSION_CACHE=1", bin.display()),
            "--server".to_owned(),
            format!(
                "axum+cache x4={},SESSION_CACHE=1,instances=4",
                bin.display()
            ),
        ]
    };
    // Again on a one-node replica set (majority writes by default, the driver's retryable
    // writes on): each section is added to the same report.
    with_deployment(DEFAULT_VERSION, Topology::ReplicaSet(1), |server| {
        for part in parts {
            let mut only = vec!["--only".to_owned(), part.to_owned(), "--append".to_owned()];
            if part == "http" {
                only.extend(cached.iter().cloned());
            } else if part == "cache-memory" {
                only.extend(cached[..cached.len().min(2)].iter().cloned());
            }
            if !run(server, &only)? {
                return Ok(false);
            }
        }
        Ok(true)
    })
}
