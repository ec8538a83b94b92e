//! The files every example shares. Each example stays copyable on its own, so shared code
//! is copied, not linked: examples/axum holds the canonical copy and
//! `cargo xtask examples-in-sync` (part of `ci`) fails when another copy differs.

use std::path::Path;

use anyhow::{Context as _, Result};

use crate::framework::Framework;

/// The example whose copy is canonical.
const CANONICAL: Framework = Framework::Axum;

/// Each shared file (under `src/`) and the examples that carry it: Actix accepts TLS
/// connections itself (with its own time-outs and caps), so it has no `https.rs`.
const SHARED: &[(&str, &[Framework])] = &[
    ("config.rs", &Framework::ALL),
    ("store.rs", &Framework::ALL),
    ("input.rs", &Framework::ALL),
    ("client_cert.rs", &Framework::ALL),
    ("tls.rs", &Framework::ALL),
    ("metrics.rs", &Framework::ALL),
    ("https.rs", &[Framework::Axum, Framework::Rocket]),
];

/// The copies under `examples/` (in `root`) that differ from the canonical one or are
/// missing, each with the command that fixes it; empty when all agree.
pub(crate) fn out_of_sync(root: &Path) -> Result<Vec<String>> {
    let src = |f: Framework| root.join("examples").join(f.name()).join("src");
    let mut problems = Vec::new();
    for (file, carriers) in SHARED {
        let canonical_path = src(CANONICAL).join(file);
        let canonical = std::fs::read(&canonical_path)
            .with_context(|| format!("cannot read {}", canonical_path.display()))?;
        for &framework in carriers.iter().filter(|f| **f != CANONICAL) {
            let copy = src(framework).join(file);
            if std::fs::read(&copy).ok().as_ref() != Some(&canonical) {
                problems.push(format!(
                    "examples/{}/src/{file} differs from examples/{}/src/{file} (or is \
                     missing): change the canonical copy, then `cp examples/{1}/src/{file} \
                     examples/{0}/src/`",
                    framework.name(),
                    CANONICAL.name(),
                ));
            }
        }
    }
    Ok(problems)
}

/// `cargo xtask examples-in-sync`: prints what differs; true when nothing does.
pub(crate) fn check(root: &Path) -> Result<bool> {
    let problems = out_of_sync(root)?;
    for p in &problems {
        eprintln!("xtask: {p}");
    }
    if problems.is_empty() {
        eprintln!("xtask: the examples' shared files are identical");
    }
    Ok(problems.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch tree with every shared file in every carrying example.
    fn tree(name: &str) -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (file, carriers) in SHARED {
            for f in *carriers {
                let dir = root.join("examples").join(f.name()).join("src");
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(file), format!("// {file}\n")).unwrap();
            }
        }
        root
    }

    #[test]
    fn identical_copies_pass() {
        let root = tree("same");
        assert_eq!(out_of_sync(&root).unwrap(), Vec::<String>::new());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn an_edited_or_missing_copy_is_named() {
        let root = tree("differ");
        std::fs::write(root.join("examples/rocket/src/input.rs"), "// edited\n").unwrap();
        std::fs::remove_file(root.join("examples/rocket/src/https.rs")).unwrap();
        let problems = out_of_sync(&root).unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("examples/rocket/src/input.rs differs"));
        assert!(problems[1].starts_with("examples/rocket/src/https.rs differs"));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn this_checkouts_examples_are_in_sync() {
        // Read when the test runs, not when it was compiled: a shared target directory may
        // hold this binary from another checkout of the same sources.
        let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets it");
        let root = Path::new(&manifest_dir).parent().unwrap();
        assert_eq!(out_of_sync(root).unwrap(), Vec::<String>::new());
    }
}
