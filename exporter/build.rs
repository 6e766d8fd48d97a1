//! Builds the eBPF program (exporter-ebpf) that the `badfd` binary embeds: the
//! shipped object, without the test-only programs.
#[path = "../exporter-ebpf/build_object.rs"]
mod build_object;

fn main() -> anyhow::Result<()> {
    build_object::build_ebpf_object(&[])
}
