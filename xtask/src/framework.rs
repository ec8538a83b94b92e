//! The example frameworks, named in one place.

use std::fmt;

use anyhow::{bail, Result};

/// One of the examples: its name on the command line and its package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framework {
    Axum,
    Actix,
    Rocket,
}

impl Framework {
    /// Every example, in the order reports list them.
    pub(crate) const ALL: [Self; 3] = [Self::Axum, Self::Actix, Self::Rocket];

    /// The name on the command line and in reports: `axum`, `actix`, `rocket`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Axum => "axum",
            Self::Actix => "actix",
            Self::Rocket => "rocket",
        }
    }

    /// The example's package (and binary) name.
    pub(crate) fn package(self) -> &'static str {
        match self {
            Self::Axum => "example-axum",
            Self::Actix => "example-actix",
            Self::Rocket => "example-rocket",
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
