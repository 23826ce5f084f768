//! Build facts for `pylon -V`: the commit, the compiler, the Pingora release
//! and its patches. Every fact has a fallback, so a build from a crate
//! tarball (no `.git`, no git) still works and says `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let root = Path::new(&root);

    let commit =
        git(root, &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PYLON_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves or the checked-out branch gets a new commit.
    if let Some(p) = git(root, &["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    if let Some(r) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(root, &["rev-parse", "--git-path", &r]) {
            println!("cargo:rerun-if-changed={}", root.join(p).display());
        }
    }

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rustc unknown".into());
    println!("cargo:rustc-env=PYLON_RUSTC={rustc}");

    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let pingora = locked_version(&lock, "pingora").unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PYLON_PINGORA={pingora}");
    println!("cargo:rerun-if-changed=Cargo.lock");

    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    let features = manifest
        .lines()
        .find(|l| l.starts_with("pingora = "))
        .and_then(|l| l.split_once("features = [")?.1.split_once(']'))
        .map(|(list, _)| list.replace(['"', ' '], ""))
        .unwrap_or_default();
    println!("cargo:rustc-env=PYLON_PINGORA_FEATURES={features}");
    println!("cargo:rerun-if-changed=Cargo.toml");

    let patches = std::fs::read_dir(root.join("vendor/patches"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "patch"))
                .count()
        })
        .unwrap_or(0);
    println!("cargo:rustc-env=PYLON_PINGORA_PATCHES={patches}");
    println!("cargo:rerun-if-changed=vendor/patches");
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The version of `name` in Cargo.lock (`[[package]]` blocks of
/// `name = "…"` then `version = "…"`).
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let want = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == want {
            let v = lines.next()?.trim().strip_prefix("version = \"")?;
            return Some(v.trim_end_matches('"').to_string());
        }
    }
    None
}
