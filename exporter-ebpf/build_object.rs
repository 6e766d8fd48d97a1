//! Builds the eBPF object from `exporter-ebpf` for bpfel-unknown-none with the
//! pinned nightly (`toolchain.env`) and bpf-linker, into the calling build
//! script's OUT_DIR as `badfd-ebpf`. Shared by the build scripts of `badfd`
//! (the shipped object) and of the tests (with the `test-programs` feature).
use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

/// The value of `key` in `toolchain.env` (`KEY=value` lines, `#` comments).
fn pinned(env_file: &str, key: &str) -> anyhow::Result<String> {
    env_file
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .ok_or_else(|| anyhow!("{key} is not set in exporter-ebpf/toolchain.env"))
}

pub fn build_ebpf_object(features: &[&str]) -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } =
        cargo_metadata::MetadataCommand::new().no_deps().exec().context("cargo metadata")?;
    let ebpf = packages
        .iter()
        .find(|p| p.name.as_str() == "exporter-ebpf")
        .ok_or_else(|| anyhow!("exporter-ebpf package not found in the workspace"))?;
    let root_dir = ebpf.manifest_path.parent().ok_or_else(|| anyhow!("exporter-ebpf has no manifest directory"))?;
    // aya-build watches only the eBPF crate's own directory; the kernel/user
    // contract it compiles in must trigger a rebuild too.
    if let Some(common) = root_dir.parent().map(|w| w.join("exporter-common")) {
        println!("cargo:rerun-if-changed={common}");
    }
    let env_path = root_dir.join("toolchain.env");
    let env_file = std::fs::read_to_string(&env_path).with_context(|| format!("reading {env_path}"))?;
    let nightly = pinned(&env_file, "RUST_NIGHTLY")?;
    aya_build::build_ebpf(
        [Package { name: ebpf.name.as_str(), root_dir: root_dir.as_str(), features, ..Default::default() }],
        Toolchain::Custom(&nightly),
    )
}
