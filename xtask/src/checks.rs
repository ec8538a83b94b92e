//! The static checks `cargo xtask ci` runs before the tests: formatting, clippy (whose
//! `incompatible_msrv` lint holds the code to each crate's `rust-version`: this machine
//! has no other toolchain to build it with), rustdoc links, cargo-deny, each publishable
//! crate's library with no feature, each feature alone and all of them, and packaging
//! every publishable crate.

use anyhow::{Context as _, Result};

use crate::cargo;

/// The crates published to crates.io (every other workspace member has
/// `publish = false`).
pub(crate) const PUBLISHED: [&str; 5] = [
    "session-store-core",
    "session-store-mongo",
    "tower-sessions-mongo",
    "actix-session-mongo",
    "rocket-session-mongo",
];

/// The cargo-deny release CI installs (`cargo install` is a no-op when it is there).
const CARGO_DENY: &str = "cargo-deny@0.20.2";

/// A cargo command line and the environment it needs.
type Step<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);

/// Runs every check in order; `false` at the first that fails.
pub(crate) fn run() -> Result<bool> {
    let mut package = vec!["package", "--locked"];
    for name in PUBLISHED {
        package.extend(["-p", name]);
    }
    let steps: [Step<'_>; 5] = [
        (&["fmt", "--all", "--check"], &[]),
        (
            &[
                "clippy",
                "--locked",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        ),
        // Broken or private intra-doc links in a library fail, so every option table
        // links to a real item on docs.rs (which documents all features; binaries
        // document private items anyway).
        (
            &[
                "doc",
                "--locked",
                "--workspace",
                "--all-features",
                "--no-deps",
                "--lib",
            ],
            &[(
                "RUSTDOCFLAGS",
                "-D rustdoc::broken_intra_doc_links -D rustdoc::private_intra_doc_links",
            )],
        ),
        // The advisory database is a git repository this machine cannot reach.
        (
            &["deny", "--locked", "check", "bans", "licenses", "sources"],
            &[],
        ),
        // Builds each publishable crate from its packaged files alone.
        (&package, &[]),
    ];
    for (args, env) in steps {
        if args[0] == "package" && !check_feature_sets()? {
            return Ok(false);
        }
        if args[0] == "deny" && !install_cargo_deny()? {
            return Ok(false);
        }
        if args[0] == "package" {
            forget_packaged_sources()?;
            forget_packaged_builds()?;
        }
        eprintln!("xtask: cargo {}", args.join(" "));
        let mut cmd = cargo();
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if !cmd.status().context("cannot run cargo")?.success() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Deletes cargo's unpacked copies of earlier packagings of our crates. `cargo package`
/// verifies each crate against the others through a local registry and unpacks them
/// under `$CARGO_HOME/registry/src/-<hash>/<name>-<version>`; with an unchanged version
/// a later run reuses that stale copy instead of the crate just packaged.
fn forget_packaged_sources() -> Result<()> {
    let cargo_home = match std::env::var_os("CARGO_HOME") {
        Some(home) => std::path::PathBuf::from(home),
        None => std::path::PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
            .join(".cargo"),
    };
    let Ok(registries) = std::fs::read_dir(cargo_home.join("registry/src")) else {
        return Ok(());
    };
    for registry in registries {
        let registry = registry?.path();
        // Local registries have no name, only a hash: `-<hash>`.
        if !registry
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('-'))
        {
            continue;
        }
        for entry in std::fs::read_dir(&registry)? {
            let path = entry?.path();
            let ours = path.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                PUBLISHED.iter().any(|c| n.starts_with(&format!("{c}-")))
            });
            if ours {
                std::fs::remove_dir_all(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// Deletes what earlier packagings compiled of our crates from the local registry.
/// cargo takes a registry crate of one version to be unchanging, so with a shared target
/// directory a later `cargo package` would link the others against the earlier build of
/// a crate (its new items then "not found"). Those builds are the ones whose dep-info
/// (`deps/<crate>-<hash>.d`) names sources under `registry/src/-<hash>` (a local
/// registry); the workspace's own builds are left alone.
fn forget_packaged_builds() -> Result<()> {
    let target = crate::cargo_target_dir();
    let deps = target.join("debug/deps");
    let Ok(entries) = std::fs::read_dir(&deps) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".d") else {
            continue;
        };
        let Some((krate, hash)) = stem.rsplit_once('-') else {
            continue;
        };
        if !PUBLISHED.iter().any(|c| c.replace('-', "_") == krate) {
            continue;
        }
        let dep_info = std::fs::read_to_string(&path).unwrap_or_default();
        if !dep_info.contains("/registry/src/-") {
            continue;
        }
        for file in [
            format!("{stem}.d"),
            format!("lib{stem}.rlib"),
            format!("lib{stem}.rmeta"),
        ] {
            let _ = std::fs::remove_file(deps.join(file));
        }
        let fingerprint = target
            .join("debug/.fingerprint")
            .join(format!("{}-{hash}", krate.replace('_', "-")));
        if fingerprint.exists() {
            std::fs::remove_dir_all(&fingerprint)
                .with_context(|| format!("cannot remove {}", fingerprint.display()))?;
        }
    }
    Ok(())
}

fn install_cargo_deny() -> Result<bool> {
    eprintln!("xtask: cargo install --locked --no-default-features {CARGO_DENY}");
    Ok(cargo()
        .args(["install", "--locked", "--no-default-features", CARGO_DENY])
        .status()
        .context("cannot run cargo install")?
        .success())
}

/// The `[features]` a crate's manifest declares (their names), in order.
pub(crate) fn declared_features(manifest: &str) -> Vec<String> {
    let mut in_features = false;
    let mut names = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_features = line == "[features]";
        } else if in_features && !line.starts_with('#') {
            if let Some((name, _)) = line.split_once('=') {
                names.push(name.trim().to_owned());
            }
        }
    }
    names
}

/// The feature sets checked for a crate with `features`: none, each alone, all.
pub(crate) fn feature_sets(features: &[String]) -> Vec<String> {
    let mut sets = vec![String::new()];
    sets.extend(features.iter().cloned());
    if features.len() > 1 {
        sets.push(features.join(","));
    }
    sets
}

/// `cargo check --lib` of each publishable crate with each of its [`feature_sets`], so a
/// feature that does not build alone (or without the others) fails here.
fn check_feature_sets() -> Result<bool> {
    for name in PUBLISHED {
        let manifest = crate::project_root()
            .join("crates")
            .join(name)
            .join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("cannot read {}", manifest.display()))?;
        for set in feature_sets(&declared_features(&text)) {
            eprintln!("xtask: cargo check -p {name} --no-default-features --features '{set}'");
            let ok = cargo()
                .args(["check", "--locked", "--quiet", "--lib", "-p", name])
                .args(["--no-default-features", "--features", &set])
                .status()
                .context("cannot run cargo")?
                .success();
            if !ok {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::project_root;

    /// Whether the crate at `dir` says `publish = false`.
    fn unpublished(dir: &Path) -> Result<bool> {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
            .with_context(|| format!("cannot read {}/Cargo.toml", dir.display()))?;
        Ok(manifest.lines().any(|l| l.trim() == "publish = false"))
    }

    #[test]
    fn published_lists_every_crate_without_publish_false() {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(project_root().join("crates")).unwrap() {
            let dir = entry.unwrap().path();
            if !unpublished(&dir).unwrap() {
                found.push(dir.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
        found.sort();
        let mut listed = PUBLISHED.map(String::from).to_vec();
        listed.sort();
        assert_eq!(found, listed);
    }

    #[test]
    fn each_published_crate_ships_its_readme_and_licenses() {
        for name in PUBLISHED {
            let dir = project_root().join("crates").join(name);
            for file in ["README.md", "LICENSE-MIT", "LICENSE-APACHE"] {
                let text = std::fs::read_to_string(dir.join(file))
                    .unwrap_or_else(|e| panic!("{name}/{file}: {e}"));
                assert!(!text.trim().is_empty(), "{name}/{file} is empty");
            }
        }
    }

    #[test]
    fn features_are_read_from_the_manifest_and_combined() {
        let manifest = "[package]\nname = \"x\"\n\n[features]\n## docs\na = [\"dep:y\"]\nb = []\n\n[lints]\nworkspace = true\n";
        let features = declared_features(manifest);
        assert_eq!(features, ["a", "b"]);
        assert_eq!(feature_sets(&features), ["", "a", "b", "a,b"]);
        assert_eq!(feature_sets(&[]), [""]);
    }
}
