//! Libraries the older mongod builds need on Debian 12 (docs/MONGODB.md): OpenSSL 1.1,
//! built from the source the crates.io crate `openssl-src` ships, and for 5.0.32 a private
//! copy of Debian's libcurl whose version node is renamed `CURL_OPENSSL_3`.
//!
//! Built libraries are build output kept under `~/.cache/session-store` (like a cargo
//! target directory); the source archive is checked against its pinned SHA-256 each time.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context as _, Result};

use crate::{cache_dir, run_checked};

const OPENSSL_CRATE: &str = "openssl-src-111.28.2+1.1.1w";
const OPENSSL_URL: &str =
    "https://static.crates.io/crates/openssl-src/openssl-src-111.28.2+1.1.1w.crate";
const OPENSSL_SHA256: &str = "bb1830e20a48a975ca898ca8c1d036a36c3c6c5cb7dabc1c216706587857920f";
const DEBIAN_LIBCURL: &str = "/usr/lib/x86_64-linux-gnu/libcurl.so.4";

fn sha256(file: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(file)
        .output()
        .context("cannot run sha256sum")?;
    ensure!(out.status.success(), "sha256sum {} failed", file.display());
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// The directory holding `libssl.so.1.1` and `libcrypto.so.1.1`, built if needed.
pub(crate) fn openssl11() -> Result<PathBuf> {
    let root = cache_dir()?.join("openssl-1.1");
    let lib = root.join("lib");
    let crate_file = root.join(format!("{OPENSSL_CRATE}.crate"));
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    if sha256(&crate_file).ok().as_deref() != Some(OPENSSL_SHA256) {
        eprintln!("xtask: downloading {OPENSSL_CRATE} (OpenSSL 1.1.1w source) from crates.io");
        run_checked(
            Command::new("python3").args([
                "-c",
                "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])",
                OPENSSL_URL,
            ]).arg(&crate_file),
            "the OpenSSL source download",
        )?;
        let got = sha256(&crate_file)?;
        ensure!(
            got == OPENSSL_SHA256,
            "{} has SHA-256 {got}, expected {OPENSSL_SHA256}",
            crate_file.display()
        );
    }
    let stamp = lib.join("built-from");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(OPENSSL_SHA256)
        && lib.join("libssl.so.1.1").is_file()
        && lib.join("libcrypto.so.1.1").is_file()
    {
        return Ok(lib);
    }
    eprintln!("xtask: building OpenSSL 1.1.1w shared libraries (about a minute)");
    let build = root.join("build");
    let _ = std::fs::remove_dir_all(&build);
    std::fs::create_dir_all(&build)?;
    run_checked(
        Command::new("tar")
            .arg("xzf")
            .arg(&crate_file)
            .arg("-C")
            .arg(&build),
        "tar (unpacking the OpenSSL source)",
    )?;
    let src = build.join(OPENSSL_CRATE).join("openssl");
    let ssl_dir = root.join("ssl");
    run_checked(
        Command::new("./config")
            .args(["shared", "no-tests"])
            .arg(format!("--openssldir={}", ssl_dir.display()))
            .arg(format!("--prefix={}", root.join("prefix").display()))
            .current_dir(&src)
            .stdout(std::process::Stdio::null()),
        "OpenSSL's ./config",
    )?;
    run_checked(
        Command::new("make")
            .args(["-j2", "build_libs"])
            .current_dir(&src)
            .stdout(std::process::Stdio::null()),
        "make build_libs (OpenSSL 1.1)",
    )?;
    std::fs::create_dir_all(&lib)?;
    for name in ["libssl.so.1.1", "libcrypto.so.1.1"] {
        std::fs::copy(src.join(name), lib.join(name))
            .with_context(|| format!("the OpenSSL build produced no {name}"))?;
    }
    std::fs::write(&stamp, OPENSSL_SHA256)?;
    let _ = std::fs::remove_dir_all(&build);
    Ok(lib)
}

/// A directory holding a copy of Debian's libcurl.so.4 whose version definition
/// `CURL_OPENSSL_4` is renamed `CURL_OPENSSL_3` (what mongod 5.0.32 asks for).
pub(crate) fn curl_openssl3() -> Result<PathBuf> {
    let dir = cache_dir()?.join("libcurl-openssl3");
    std::fs::create_dir_all(&dir)?;
    let mut elf = std::fs::read(DEBIAN_LIBCURL)
        .with_context(|| format!("cannot read {DEBIAN_LIBCURL}: install Debian's libcurl4"))?;
    rename_version(&mut elf, b"CURL_OPENSSL_4", b"CURL_OPENSSL_3")?;
    let out = dir.join("libcurl.so.4");
    std::fs::write(&out, &elf).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(dir)
}

fn u16_at(b: &[u8], at: usize) -> Result<u16> {
    Ok(u16::from_le_bytes(
        b.get(at..at + 2).context("truncated ELF")?.try_into()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32> {
    Ok(u32::from_le_bytes(
        b.get(at..at + 4).context("truncated ELF")?.try_into()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Result<usize> {
    Ok(usize::try_from(u64::from_le_bytes(
        b.get(at..at + 8).context("truncated ELF")?.try_into()?,
    ))?)
}

/// The System V ELF hash of a symbol version name (`vd_hash`).
fn elf_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in name {
        h = (h << 4).wrapping_add(u32::from(c));
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

/// Renames a version definition of a 64-bit little-endian ELF shared object in place.
fn rename_version(elf: &mut [u8], from: &[u8], to: &[u8]) -> Result<()> {
    ensure!(
        from.len() == to.len(),
        "version names must have the same length"
    );
    ensure!(
        elf.get(..4) == Some(b"\x7fELF") && elf.get(4) == Some(&2) && elf.get(5) == Some(&1),
        "not a 64-bit little-endian ELF file"
    );
    const SHT_GNU_VERDEF: u32 = 0x6fff_fffd;
    let shoff = u64_at(elf, 0x28)?;
    let shentsize = usize::from(u16_at(elf, 0x3a)?);
    let shnum = usize::from(u16_at(elf, 0x3c)?);
    let section = |i: usize| shoff + i * shentsize;
    for i in 0..shnum {
        let sh = section(i);
        if u32_at(elf, sh + 4)? != SHT_GNU_VERDEF {
            continue;
        }
        let verdef_off = u64_at(elf, sh + 0x18)?;
        let strtab_off = u64_at(
            elf,
            section(usize::try_from(u32_at(elf, sh + 0x28)?)?) + 0x18,
        )?;
        let mut entry = verdef_off;
        loop {
            let aux = entry + usize::try_from(u32_at(elf, entry + 12)?)?;
            let name = strtab_off + usize::try_from(u32_at(elf, aux)?)?;
            if elf
                .get(name..name + from.len() + 1)
                .is_some_and(|n| &n[..from.len()] == from && n[from.len()] == 0)
            {
                elf[name..name + to.len()].copy_from_slice(to);
                elf[entry + 8..entry + 12].copy_from_slice(&elf_hash(to).to_le_bytes());
                return Ok(());
            }
            let next = usize::try_from(u32_at(elf, entry + 16)?)?;
            if next == 0 {
                break;
            }
            entry += next;
        }
    }
    bail!(
        "no version definition {} found",
        String::from_utf8_lossy(from)
    )
}
