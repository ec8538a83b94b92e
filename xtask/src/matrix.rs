//! `cargo xtask test-matrix`: the live suites (conformance, store, TLS, and the HTTP
//! contract of each framework's example) for every server version x driver version x
//! topology cell.
//!
//! Drivers are pinned in a scratch copy of the working tree (`cargo update -p mongodb
//! --precise V`), each with its own target directory under `~/.cache/session-store`, so
//! the project's Cargo.lock is never touched. The bson axis turns on the driver's `bson-3`
//! feature in the copy (what an application depending on bson 3 does). A grid is printed and written to
//! `target/test-matrix.md`; any failed cell makes the command fail.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use crate::framework::{Framework, CONTRACT_PACKAGE};
use crate::{project_root, with_deployment, Topology};

/// The oldest `mongodb` release the workspace supports (declared in Cargo.toml).
pub(crate) const OLDEST_DRIVER: &str = "3.2.5";
/// The first `mongodb` release with the `bson-3` feature.
const FIRST_DRIVER_WITH_BSON_3: &str = "3.3.0";

/// What the command line narrows the matrix to.
#[derive(Debug, PartialEq)]
pub(crate) struct Selection {
    pub servers: Vec<String>,
    pub drivers: Vec<String>,
    /// `2` and/or `3`: the bson major version `mongodb::bson` resolves to.
    pub bsons: Vec<String>,
    pub topologies: Vec<String>,
    pub frameworks: Vec<Framework>,
}

enum Outcome {
    Pass,
    Fail(String),
    Skipped(String),
}

struct Cell {
    server: String,
    driver: String,
    bson: String,
    topology: String,
    outcome: Outcome,
    took: Duration,
}

/// The `mongodb` version the project's lockfile resolves.
fn locked_driver() -> Result<String> {
    let lock = std::fs::read_to_string(project_root().join("Cargo.lock"))
        .context("cannot read Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"mongodb\"" {
            if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \"")) {
                return Ok(v.trim_end_matches('"').to_owned());
            }
        }
    }
    bail!("Cargo.lock has no mongodb package")
}

/// `newest` / `oldest` or a version.
fn resolve_driver(name: &str) -> Result<String> {
    Ok(match name {
        "newest" | "locked" => locked_driver()?,
        "oldest" => OLDEST_DRIVER.to_owned(),
        v => v.to_owned(),
    })
}

/// Whether version `a` (`x.y.z`) is older than `b`.
fn older(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a) < parse(b)
}

/// The workspace manifest with the `mongodb` dependency's `bson-3` feature on.
fn with_bson_3(manifest: &str) -> Result<String> {
    let mut found = false;
    let out: Vec<String> = manifest
        .lines()
        .map(|line| match line.strip_prefix("mongodb = \"") {
            Some(rest) => {
                found = true;
                let version = rest.trim_end_matches('"');
                format!("mongodb = {{ version = \"{version}\", features = [\"bson-3\"] }}")
            }
            None => line.to_owned(),
        })
        .collect();
    anyhow::ensure!(
        found,
        "the workspace Cargo.toml has no `mongodb = \"..\"` line"
    );
    Ok(out.join("\n") + "\n")
}

/// A copy of the working tree (tracked and untracked, not ignored files) with `mongodb`
/// pinned to `driver`, and its `bson-3` feature on when `bson` is `3`.
fn scratch_copy(driver: &str, bson: &str) -> Result<PathBuf> {
    let root = project_root();
    let dir =
        std::env::temp_dir().join(format!("session-store-matrix-mongodb-{driver}-bson-{bson}"));
    let _ = std::fs::remove_dir_all(&dir);
    let files = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(&root)
        .output()
        .context("cannot run git ls-files")?;
    if !files.status.success() {
        bail!("git ls-files failed in {}", root.display());
    }
    for name in files.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let rel = Path::new(std::str::from_utf8(name)?);
        let (from, to) = (root.join(rel), dir.join(rel));
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&from, &to).with_context(|| format!("cannot copy {}", from.display()))?;
    }
    if bson == "3" {
        let manifest = dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)?;
        std::fs::write(&manifest, with_bson_3(&text)?)?;
    }
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "update",
            "--quiet",
            "--package",
            "mongodb",
            "--precise",
            driver,
        ])
        .current_dir(&dir)
        .status()
        .context("cannot run cargo update")?;
    if !status.success() {
        bail!("cannot pin mongodb {driver} (cargo update --precise failed)");
    }
    Ok(dir)
}

fn target_dir(driver: &str, bson: &str) -> Result<PathBuf> {
    let suffix = if bson == "3" { "-bson-3" } else { "" };
    Ok(crate::cache_dir()?.join(format!("target-mongodb-{driver}{suffix}")))
}

/// The `cargo test` runs of the live suites in `dir`: the MongoDB backend's, then the
/// contract of each framework's server; `extra` adds `--no-run` or test filters.
fn cargo_tests(
    dir: &Path,
    (driver, bson): (&str, &str),
    frameworks: &[Framework],
    extra: &[&str],
) -> Vec<Command> {
    let cargo_test = |selection: &[&str]| {
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.arg("test")
            .args(selection)
            .args(extra)
            .current_dir(dir)
            .env(
                "CARGO_TARGET_DIR",
                target_dir(driver, bson).unwrap_or_default(),
            );
        cmd
    };
    let mut runs = vec![cargo_test(&["--package", "session-store-mongo"])];
    if !frameworks.is_empty() {
        let mut contract = vec!["--package", CONTRACT_PACKAGE];
        for f in frameworks {
            contract.extend(["--test", f.contract_test()]);
        }
        runs.push(cargo_test(&contract));
    }
    runs
}

pub(crate) fn run(selection: &Selection) -> Result<bool> {
    let started = Instant::now();
    let mut cells = Vec::new();
    for driver_name in &selection.drivers {
        let driver = resolve_driver(driver_name)?;
        for bson in &selection.bsons {
            if bson == "3" && older(&driver, FIRST_DRIVER_WITH_BSON_3) {
                let why = format!("mongodb {driver} has no bson-3 feature");
                for server in &selection.servers {
                    for topology in &selection.topologies {
                        cells.push(Cell {
                            server: server.clone(),
                            driver: driver.clone(),
                            bson: bson.clone(),
                            topology: topology.clone(),
                            outcome: Outcome::Skipped(why.clone()),
                            took: Duration::ZERO,
                        });
                    }
                }
                continue;
            }
            eprintln!(
                "xtask: test-matrix: mongodb {driver}, bson {bson}: preparing a scratch copy"
            );
            let dir = scratch_copy(&driver, bson)?;
            let pins = (driver.as_str(), bson.as_str());
            let mut built = true;
            for mut build in cargo_tests(&dir, pins, &selection.frameworks, &["--no-run"]) {
                built &= build.status().context("cannot build the tests")?.success();
            }
            for server in &selection.servers {
                for topology in &selection.topologies {
                    let cell_started = Instant::now();
                    let outcome = if built {
                        run_cell(&dir, pins, server, topology, &selection.frameworks)
                    } else {
                        Outcome::Fail(format!(
                            "the tests do not build with mongodb {driver} and bson {bson}"
                        ))
                    };
                    let cell = Cell {
                        server: server.clone(),
                        driver: driver.clone(),
                        bson: bson.clone(),
                        topology: topology.clone(),
                        outcome,
                        took: cell_started.elapsed(),
                    };
                    eprintln!(
                        "xtask: test-matrix: {} x mongodb {} x bson {} x {}: {} ({:.0?})",
                        cell.server,
                        cell.driver,
                        cell.bson,
                        cell.topology,
                        label(&cell.outcome),
                        cell.took
                    );
                    cells.push(cell);
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let report = grid(&cells, &selection.frameworks, started.elapsed());
    println!("{report}");
    let out = project_root().join("target").join("test-matrix.md");
    std::fs::create_dir_all(out.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(&out, &report).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("xtask: test-matrix: grid written to {}", out.display());
    Ok(cells.iter().all(|c| !matches!(c.outcome, Outcome::Fail(_))))
}

fn run_cell(
    dir: &Path,
    (driver, bson): (&str, &str),
    server: &str,
    topology: &str,
    frameworks: &[Framework],
) -> Outcome {
    let topo = match Topology::parse(topology) {
        Ok(t) => t,
        Err(e) => return Outcome::Skipped(format!("{e:#}")),
    };
    let result = with_deployment(server, topo, |deployment| {
        let log = std::env::temp_dir().join(format!(
            "session-store-matrix-{server}-{driver}-bson{bson}-{topology}.log"
        ));
        let file = std::fs::File::create(&log)?;
        let mut passed = true;
        for mut tests in cargo_tests(dir, (driver, bson), frameworks, &[]) {
            tests
                .env("MONGODB_URI", deployment.uri())
                .env("MONGOD_BIN", &deployment.bin)
                .env("SESSION_STORE_REQUIRE_MONGO", "1")
                .stdout(file.try_clone()?)
                .stderr(file.try_clone()?);
            passed = crate::wait_serving(&mut tests, "cargo test")?.success();
            if !passed {
                break;
            }
        }
        if passed {
            Ok(Outcome::Pass)
        } else {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            // The log stays on the machine that ran the cell; CI shows only what is
            // printed, so the failing tests' own output goes to stderr too.
            eprint!("{}", failure_output(&text));
            let failed: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("test ") && l.ends_with("FAILED"))
                .map(|l| {
                    l.trim_start_matches("test ")
                        .trim_end_matches(" ... FAILED")
                })
                .collect();
            Ok(Outcome::Fail(format!(
                "{} (log: {})",
                if failed.is_empty() {
                    "cargo test failed".to_owned()
                } else {
                    failed.join(", ")
                },
                log.display()
            )))
        }
    });
    result.unwrap_or_else(|e| Outcome::Fail(format!("{e:#}")))
}

/// The output libtest prints for each failed test (the `---- name stdout ----` blocks up
/// to the list of names), from every test binary in a `cargo test` log.
fn failure_output(log: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in log.lines() {
        if line.starts_with("---- ") && line.ends_with(" ----") {
            inside = true;
        } else if line == "failures:" {
            inside = false;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn label(o: &Outcome) -> String {
    match o {
        Outcome::Pass => "pass".into(),
        Outcome::Fail(why) => format!("FAIL: {why}"),
        Outcome::Skipped(why) => format!("skipped: {why}"),
    }
}

fn grid(cells: &[Cell], frameworks: &[Framework], total: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Test matrix\n\nSuites per cell: session-store-mongo (conformance, store, TLS/mTLS/X.509/SCRAM) \
         and the HTTP contract of {}. Total {:.1} min.\n",
        frameworks
            .iter()
            .map(|f| f.contract_server())
            .collect::<Vec<_>>()
            .join(", "),
        total.as_secs_f64() / 60.0
    );
    out.push_str(
        "| server | driver | bson | topology | result | time |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for c in cells {
        let _ = writeln!(
            out,
            "| {} | mongodb {} | {} | {} | {} | {:.0} s |",
            c.server,
            c.driver,
            c.bson,
            c.topology,
            label(&c.outcome),
            c.took.as_secs_f64()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{failure_output, older, with_bson_3};

    #[test]
    fn bson_3_turns_on_the_drivers_feature_and_nothing_else() {
        let manifest = "[workspace.dependencies]\nanyhow = \"1\"\nmongodb = \"3.2.5\"\n";
        assert_eq!(
            with_bson_3(manifest).unwrap(),
            "[workspace.dependencies]\nanyhow = \"1\"\n\
             mongodb = { version = \"3.2.5\", features = [\"bson-3\"] }\n"
        );
        assert!(with_bson_3("[workspace]\n").is_err());
        assert!(older("3.2.5", "3.3.0"));
        assert!(!older("3.10.0", "3.3.0"));
        assert!(!older("3.3.0", "3.3.0"));
    }

    #[test]
    fn failure_output_keeps_each_failed_tests_output_and_nothing_else() {
        let log = "\
running 2 tests
test a ... ok
test b ... FAILED

failures:

---- b stdout ----
thread 'b' panicked at tests/live.rs:9:5:
called `Result::unwrap()` on an `Err` value: Timeout

failures:
    b

test result: FAILED. 1 passed; 1 failed
";
        assert_eq!(
            failure_output(log),
            "---- b stdout ----\n\
             thread 'b' panicked at tests/live.rs:9:5:\n\
             called `Result::unwrap()` on an `Err` value: Timeout\n\n"
        );
        assert_eq!(failure_output("test a ... ok\n"), "");
    }
}
