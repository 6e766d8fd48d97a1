//! Builds the eBPF program (exporter-ebpf) that the `badfd` binary embeds: the
//! shipped object, without the test-only programs. Also bakes the git
//! revision and the compiler's version into `badfd_build_info`.
#[path = "../exporter-ebpf/build_object.rs"]
mod build_object;

fn main() -> anyhow::Result<()> {
    build_info();
    build_object::build_ebpf_object(&[])
}

/// `BADFD_GIT_REVISION` (`git rev-parse --short HEAD`, "unknown" outside a
/// git checkout, e.g. a crates.io tarball) and `BADFD_RUSTC_VERSION`.
fn build_info() {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    };
    let revision = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BADFD_GIT_REVISION={revision}");
    // A new commit changes HEAD (detached) or the branch's ref (loose, or
    // packed): each is watched so that the revision follows the checkout.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"]), git(&["rev-parse", "--git-path", "packed-refs"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    for path in watched.into_iter().flatten() {
        let path = std::path::Path::new(&path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        // "rustc 1.95.0 (hash date)": the version number.
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BADFD_RUSTC_VERSION={version}");
}
