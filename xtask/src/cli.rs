//! The command line: the usage text, the tasks it names, and the one parser that reads
//! every command's options.

use anyhow::{bail, Context as _, Result};

use crate::framework::Framework;
use crate::mongod::{self, DEFAULT_VERSION};
use crate::{matrix, Topology};

pub(crate) const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test [--server 6.0.5] [--topology standalone|rs1|rs3] [-- ARGS]
                                 start throwaway mongods, run `cargo test --workspace ARGS`
                                 against them (MONGODB_URI, MONGOD_BIN set), stop them
  test-matrix [--servers 6.0.5,6.0.27,5.0.32,4.4.2] [--drivers newest,oldest]
              [--bson 2,3] [--topologies standalone,rs1,rs3] [--frameworks axum,actix,rocket]
                                 the live suites for every server x driver x bson x
                                 topology cell (bson 3 needs mongodb 3.3.0 or newer);
                                 grid in target/test-matrix.md
  demo [--framework axum|actix|rocket] [--port 3000]
                                 start a throwaway mongod and serve an example app on it
  mongod up [--version 6.0.5] [--tls|--mtls|--x509|--scram]
                                 start a mongod for your own use and print MONGODB_URI
                                 (database `app`); its port and data stay until `down`;
                                 versions 6.0.5, 6.0.27, 5.0.32, 4.4.2 (the older ones
                                 get OpenSSL 1.1, built once); the modes use `certs`
  certs                          write test certificates (CA, server, clients) to .xtask/certs
  mongod stop                    stop it, keeping its data and port
  mongod start                   start it again: same port, same data
  mongod down                    stop it and DELETE its data
  mongod status                  say whether it runs and answers on its port
  ci                             what .ci/run does: cargo fmt --check,
                                 clippy -D warnings, cargo doc (broken links fail),
                                 cargo deny check bans licenses sources (installed
                                 first), cargo check --lib of each published crate
                                 with no feature, each feature and all, cargo package
                                 of each published crate, `test`,
                                 the MongoDB backend's suites with bson 3, and the
                                 matrix cell 4.4.2 x oldest driver x standalone; every
                                 build --locked
  bench [--quick] [--rounds 3]
        [--only store|commands|http|cache-memory|scale|payload|storm|connections|soak]
        [--sizes 10000,100000,1000000]
        [--seconds 10] [--connections 64]
                                 start a throwaway mongod; benchmark the store against the raw
                                 driver, each contract server (and the floor server, Express +
                                 connect-mongo, the Rust peer) over HTTP under wrk, again
                                 on a one-node replica set with Axum's session cache at 1
                                 and 4 instances, the cache's memory with 100,000 sessions
                                 (cache-memory), the floor and Axum with many stored
                                 sessions (scale) and
                                 with 1 KB to 256 KB sessions, plain and encrypted
                                 (payload), Axum while 200,000 sessions expire at once
                                 (storm), at 64/256/1,024 connections (connections),
                                 Axum for 10 minutes: RSS, connections (soak); --quick
                                 runs every part in under 5 minutes; write
                                 target/bench/latest.md
  fuzz [--cases 50000]           the property tests (stored documents, cookies, envelopes,
                                 SESSION_KEYS, connection strings, error texts) with many
                                 cases each; no mongod needed
  help                           this text
";

/// Everything the command line says.
#[derive(Debug, PartialEq)]
pub(crate) enum Task {
    Test {
        server: String,
        topology: Topology,
        cargo_args: Vec<String>,
    },
    Demo {
        framework: Framework,
        port: u16,
    },
    MongodUp {
        version: String,
        mode: Option<String>,
    },
    Certs,
    TestMatrix(matrix::Selection),
    MongodDown,
    MongodStatus,
    /// Stop the `up` mongod, keeping its data and port.
    MongodStop,
    /// Start it again after `stop`.
    MongodStart,
    Ci,
    Bench(Bench),
    Fuzz {
        cases: u32,
    },
    Help,
}

/// The benchmark's parts (`bench --only PART`), as the benchmark binary names them.
const BENCH_PARTS: [&str; 9] = [
    "store",
    "commands",
    "http",
    "cache-memory",
    "scale",
    "payload",
    "storm",
    "connections",
    "soak",
];

/// `bench`'s options, passed on to the benchmark binary.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Bench {
    pub(crate) quick: bool,
    pub(crate) rounds: Option<u32>,
    /// One of [`BENCH_PARTS`].
    pub(crate) only: Option<String>,
    /// The scale part's stored-session counts, as given (`10000,100000`).
    pub(crate) sizes: Option<String>,
    pub(crate) seconds: Option<u32>,
    pub(crate) connections: Option<u32>,
}

impl Bench {
    /// Only a part that needs no servers (nothing to build but the harness).
    pub(crate) fn store_only(&self) -> bool {
        matches!(self.only.as_deref(), Some("store" | "commands"))
    }

    /// The parts that run a second time on a one-node replica set (`--only` narrows
    /// them): the two ways of sending a write, the HTTP part, and the cache's memory
    /// (which needs a replica set).
    pub(crate) fn replica_set_parts(&self) -> Vec<&'static str> {
        ["commands", "http", "cache-memory"]
            .into_iter()
            .filter(|part| self.only.as_deref().is_none_or(|only| only == *part))
            .collect()
    }

    /// The benchmark binary's arguments for these options.
    pub(crate) fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.quick {
            args.push("--quick".to_owned());
        }
        let values = [
            ("--rounds", self.rounds.map(|n| n.to_string())),
            ("--only", self.only.clone()),
            ("--sizes", self.sizes.clone()),
            ("--seconds", self.seconds.map(|n| n.to_string())),
            ("--connections", self.connections.map(|n| n.to_string())),
        ];
        for (name, value) in values {
            if let Some(value) = value {
                args.extend([name.to_owned(), value]);
            }
        }
        args
    }
}

/// One command's options as given: `--name value` pairs and `--switch`es, each checked
/// against what the command accepts. The one parser every command uses.
struct Options<'a> {
    values: Vec<(&'a str, &'a str)>,
    switches: Vec<&'a str>,
}

impl<'a> Options<'a> {
    /// Reads `args`, accepting the options in `values` (each followed by a value) and
    /// the flags in `switches`; anything else, a missing value or a repeat is an error.
    fn parse(args: &[&'a str], values: &[&str], switches: &[&str]) -> Result<Self> {
        let mut options = Self {
            values: Vec::new(),
            switches: Vec::new(),
        };
        let mut it = args.iter().copied();
        while let Some(arg) = it.next() {
            let repeated =
                options.values.iter().any(|(n, _)| *n == arg) || options.switches.contains(&arg);
            if repeated {
                bail!("{arg} is given twice\n\n{USAGE}");
            }
            if values.contains(&arg) {
                match it.next() {
                    Some(v) if !v.starts_with("--") => options.values.push((arg, v)),
                    _ => bail!("{arg} needs a value\n\n{USAGE}"),
                }
            } else if switches.contains(&arg) {
                options.switches.push(arg);
            } else {
                bail!("unexpected argument `{arg}`\n\n{USAGE}");
            }
        }
        Ok(options)
    }

    fn value(&self, name: &str) -> Option<&'a str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>> {
        self.value(name)
            .map(|v| {
                v.parse()
                    .ok()
                    .with_context(|| format!("{name} {v} is not a valid number"))
            })
            .transpose()
    }

    /// A comma-separated list, or `default`.
    fn list(&self, name: &str, default: &[&str]) -> Vec<String> {
        match self.value(name) {
            None => default.iter().map(|s| (*s).to_owned()).collect(),
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    fn switch(&self, name: &str) -> bool {
        self.switches.contains(&name)
    }
}

/// Parses the arguments after `cargo xtask`.
pub(crate) fn parse(args: &[String]) -> Result<Task> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (command, rest): (Vec<&str>, &[&str]) = match args.as_slice() {
        ["mongod", sub, rest @ ..] => (vec!["mongod", sub], rest),
        [command, rest @ ..] => (vec![command], rest),
        [] => (vec![], &[]),
    };
    let no_options = || Options::parse(rest, &[], &[]).map(|_| ());
    Ok(match command.as_slice() {
        [] | ["help" | "--help" | "-h"] => Task::Help,
        ["test"] => {
            let (own, cargo_args) = match rest.iter().position(|a| *a == "--") {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            let o = Options::parse(own, &["--server", "--topology"], &[])
                .context("put cargo test arguments after `--`")?;
            Task::Test {
                server: o.value("--server").unwrap_or(DEFAULT_VERSION).to_owned(),
                topology: o
                    .value("--topology")
                    .map_or(Ok(Topology::Standalone), Topology::parse)?,
                cargo_args: cargo_args.iter().map(|s| (*s).to_owned()).collect(),
            }
        }
        ["demo"] => {
            let o = Options::parse(rest, &["--framework", "--port"], &[])?;
            Task::Demo {
                framework: o
                    .value("--framework")
                    .map_or(Ok(Framework::Axum), Framework::parse)?,
                port: o.number("--port")?.unwrap_or(3000),
            }
        }
        ["mongod", "up"] => {
            let modes = ["--tls", "--mtls", "--x509", "--scram"];
            let o = Options::parse(rest, &["--version"], &modes)?;
            if o.switches.len() > 1 {
                bail!("choose one of {}\n\n{USAGE}", modes.join(", "));
            }
            Task::MongodUp {
                version: o.value("--version").unwrap_or(DEFAULT_VERSION).to_owned(),
                mode: o
                    .switches
                    .first()
                    .map(|m| m.trim_start_matches('-').to_owned()),
            }
        }
        ["mongod"] | ["mongod", "help" | "--help" | "-h"] => Task::Help,
        ["mongod", "down"] => no_options().map(|()| Task::MongodDown)?,
        ["mongod", "stop"] => no_options().map(|()| Task::MongodStop)?,
        ["mongod", "start"] => no_options().map(|()| Task::MongodStart)?,
        ["mongod", "status"] => no_options().map(|()| Task::MongodStatus)?,
        ["certs"] => no_options().map(|()| Task::Certs)?,
        ["ci"] => no_options().map(|()| Task::Ci)?,
        ["test-matrix"] => {
            let o = Options::parse(
                rest,
                &[
                    "--servers",
                    "--drivers",
                    "--bson",
                    "--topologies",
                    "--frameworks",
                ],
                &[],
            )?;
            let names = Framework::ALL.map(Framework::name);
            let bsons = o.list("--bson", &["2", "3"]);
            if let Some(bad) = bsons.iter().find(|b| !matches!(b.as_str(), "2" | "3")) {
                bail!("--bson takes 2 and/or 3 (the bson major version), not {bad:?}");
            }
            Task::TestMatrix(matrix::Selection {
                servers: o.list("--servers", &mongod::versions()),
                drivers: o.list("--drivers", &["newest", "oldest"]),
                bsons,
                topologies: o.list("--topologies", &["standalone", "rs1", "rs3"]),
                frameworks: o
                    .list("--frameworks", &names)
                    .iter()
                    .map(|f| Framework::parse(f))
                    .collect::<Result<_>>()?,
            })
        }
        ["fuzz"] => {
            let o = Options::parse(rest, &["--cases"], &[])?;
            Task::Fuzz {
                cases: o.number("--cases")?.unwrap_or(50_000),
            }
        }
        ["bench"] => {
            let o = Options::parse(
                rest,
                &[
                    "--rounds",
                    "--only",
                    "--sizes",
                    "--seconds",
                    "--connections",
                ],
                &["--quick"],
            )?;
            let only = o.value("--only").map(str::to_owned);
            if let Some(other) = only.as_deref().filter(|o| !BENCH_PARTS.contains(o)) {
                bail!("--only {other}: use {}", BENCH_PARTS.join(", "));
            }
            let sizes = o.value("--sizes").map(str::to_owned);
            if let Some(bad) = sizes.as_deref().filter(|l| {
                l.split(',')
                    .any(|n| n.trim().parse::<u64>().map_or(true, |n| n == 0))
            }) {
                bail!("--sizes {bad}: positive numbers separated by commas");
            }
            Task::Bench(Bench {
                quick: o.switch("--quick"),
                rounds: o.number("--rounds")?,
                only,
                sizes,
                seconds: o.number("--seconds")?,
                connections: o.number("--connections")?,
            })
        }
        _ => bail!("unknown command `{}`\n\n{USAGE}", args.join(" ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Task> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        parse(&args)
    }

    #[test]
    fn commands_with_their_defaults() {
        assert_eq!(parse_line("").unwrap(), Task::Help);
        assert_eq!(
            parse_line("demo").unwrap(),
            Task::Demo {
                framework: Framework::Axum,
                port: 3000
            }
        );
        assert_eq!(
            parse_line("test").unwrap(),
            Task::Test {
                server: DEFAULT_VERSION.to_owned(),
                topology: Topology::Standalone,
                cargo_args: vec![],
            }
        );
        assert_eq!(parse_line("mongod down").unwrap(), Task::MongodDown);
        assert_eq!(parse_line("mongod stop").unwrap(), Task::MongodStop);
        assert_eq!(parse_line("mongod start").unwrap(), Task::MongodStart);
        assert_eq!(parse_line("mongod --help").unwrap(), Task::Help);
        assert_eq!(parse_line("mongod").unwrap(), Task::Help);
        assert_eq!(parse_line("bench").unwrap(), Task::Bench(Bench::default()));
        assert_eq!(parse_line("fuzz").unwrap(), Task::Fuzz { cases: 50_000 });
        assert_eq!(
            parse_line("fuzz --cases 10").unwrap(),
            Task::Fuzz { cases: 10 }
        );
    }

    #[test]
    fn options_are_read_in_any_order() {
        assert_eq!(
            parse_line("demo --port 4000 --framework rocket").unwrap(),
            Task::Demo {
                framework: Framework::Rocket,
                port: 4000
            }
        );
        assert_eq!(
            parse_line("test --topology rs3 --server 4.4.2 -- -p x --nocapture").unwrap(),
            Task::Test {
                server: "4.4.2".to_owned(),
                topology: Topology::ReplicaSet(3),
                cargo_args: vec!["-p".into(), "x".into(), "--nocapture".into()],
            }
        );
        assert_eq!(
            parse_line("mongod up --x509 --version 5.0.32").unwrap(),
            Task::MongodUp {
                version: "5.0.32".to_owned(),
                mode: Some("x509".to_owned())
            }
        );
        let Task::Bench(bench) = parse_line("bench --only http --quick --rounds 2").unwrap() else {
            panic!("not bench");
        };
        assert_eq!(bench.args(), ["--quick", "--rounds", "2", "--only", "http"]);
        assert!(!bench.store_only());
        let Task::TestMatrix(s) = parse_line("test-matrix --frameworks rocket,axum").unwrap()
        else {
            panic!("not test-matrix");
        };
        assert_eq!(s.frameworks, [Framework::Rocket, Framework::Axum]);
        assert_eq!(s.drivers, ["newest", "oldest"]);
        assert_eq!(s.bsons, ["2", "3"]);
        let Task::TestMatrix(s) = parse_line("test-matrix --bson 3").unwrap() else {
            panic!("not test-matrix");
        };
        assert_eq!(s.bsons, ["3"]);
    }

    #[test]
    fn bad_input_is_an_error_naming_it() {
        for (line, says) in [
            ("demo --port", "--port needs a value"),
            ("demo --port --framework axum", "--port needs a value"),
            ("demo --port 70000", "--port 70000 is not a valid number"),
            ("demo --framework flask", "unknown framework `flask`"),
            ("demo --port 1 --port 2", "--port is given twice"),
            ("test --nocapture", "unexpected argument `--nocapture`"),
            ("mongod up --tls --scram", "choose one of"),
            ("mongod down now", "unexpected argument `now`"),
            ("ci --fast", "unexpected argument `--fast`"),
            (
                "bench --only disk",
                "--only disk: use store, commands, http, cache-memory, scale, payload, storm, connections, soak",
            ),
            ("bench --sizes 10,x", "--sizes 10,x: positive numbers"),
            ("bench --rounds many", "--rounds many is not a valid number"),
            (
                "test-matrix --frameworks axum,flask",
                "unknown framework `flask`",
            ),
            ("test-matrix --bson 4", "--bson takes 2 and/or 3"),
            ("deploy", "unknown command `deploy`"),
            ("mongod restart", "unknown command `mongod restart`"),
        ] {
            let e = format!("{:#}", parse_line(line).unwrap_err());
            assert!(e.contains(says), "`{line}`: {e}");
        }
    }
}
