//! Builds the tests' own eBPF object: the shipped programs plus the test-only
//! ones (`test-programs`: bench_emit, the floor programs), which `badfd` never
//! embeds; and the 32-bit process of tests/exact.rs (tests/ia32/opens.c).
#[path = "../exporter-ebpf/build_object.rs"]
mod build_object;

use anyhow::{bail, Context as _};

/// `gcc -m32` on tests/ia32/opens.c, freestanding (no 32-bit libraries
/// needed), static, into OUT_DIR/ia32-opens; the tests embed it, so that it
/// reaches the kernel matrix's VMs too.
fn build_ia32_program() -> anyhow::Result<()> {
    let source = "ia32/opens.c";
    println!("cargo:rerun-if-changed={source}");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("ia32-opens");
    let status = std::process::Command::new("gcc")
        .args(["-m32", "-static", "-nostdlib", "-ffreestanding", "-fno-pie", "-no-pie", "-fno-stack-protector", "-O2"])
        .args(["-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg(source)
        .status()
        .context("running gcc -m32 for tests/ia32/opens.c (gcc is needed to build the tests)")?;
    if !status.success() {
        bail!("gcc -m32 failed on tests/ia32/opens.c ({status})");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    build_ia32_program()?;
    build_object::build_ebpf_object(&["test-programs"])
}
