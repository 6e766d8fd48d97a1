//! Builds the eBPF program (exporter-ebpf) for bpfel-unknown-none with the nightly
//! toolchain and bpf-linker, so the `badfd` binary embeds it.
use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .iter()
        .find(|p| p.name.as_str() == "exporter-ebpf")
        .ok_or_else(|| anyhow!("exporter-ebpf package not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("exporter-ebpf has no manifest directory"))?;
    // aya-build watches only the eBPF crate's own directory; the kernel/user
    // contract it compiles in must trigger a rebuild too.
    let common = root_dir.parent().map(|w| w.join("exporter-common"));
    if let Some(common) = common {
        println!("cargo:rerun-if-changed={common}");
    }
    aya_build::build_ebpf(
        [Package { name: ebpf.name.as_str(), root_dir: root_dir.as_str(), ..Default::default() }],
        Toolchain::default(),
    )
}
