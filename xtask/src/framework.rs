//! The frameworks: each has an example app (`examples/<name>`) and a contract server
//! (`contract-<name>` in `crates/contract-server`), named in one place.

use std::fmt;

use anyhow::{bail, Result};

/// The package of the three contract servers.
pub(crate) const CONTRACT_PACKAGE: &str = "contract-server";

/// One of the frameworks: its name on the command line, its example and its contract
/// server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framework {
    Axum,
    Actix,
    Rocket,
}

impl Framework {
    /// Every framework, in the order reports list them.
    pub(crate) const ALL: [Self; 3] = [Self::Axum, Self::Actix, Self::Rocket];

    /// The name on the command line and in reports: `axum`, `actix`, `rocket`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Axum => "axum",
            Self::Actix => "actix",
            Self::Rocket => "rocket",
        }
    }

    /// The example app's package (and binary) name: what `demo` serves.
    pub(crate) fn example(self) -> &'static str {
        match self {
            Self::Axum => "example-axum",
            Self::Actix => "example-actix",
            Self::Rocket => "example-rocket",
        }
    }

    /// The contract server's binary (in the [`CONTRACT_PACKAGE`]): what the contract
    /// suite, the test matrix and the benchmarks run.
    pub(crate) fn contract_server(self) -> &'static str {
        match self {
            Self::Axum => "contract-axum",
            Self::Actix => "contract-actix",
            Self::Rocket => "contract-rocket",
        }
    }

    /// The contract suite's test target for this framework (`cargo test --test ...`).
    pub(crate) fn contract_test(self) -> &'static str {
        match self {
            Self::Axum => "contract_axum",
            Self::Actix => "contract_actix",
            Self::Rocket => "contract_rocket",
        }
    }

    /// Parses a name given on the command line.
    pub(crate) fn parse(name: &str) -> Result<Self> {
        match Self::ALL.into_iter().find(|f| f.name() == name) {
            Some(f) => Ok(f),
            None => bail!("unknown framework `{name}`: use axum, actix or rocket"),
        }
    }
}

impl fmt::Display for Framework {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
