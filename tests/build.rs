//! Builds the tests' own eBPF object: the shipped programs plus the test-only
//! ones (`test-programs`: bench_emit, the floor programs), which `badfd` never
//! embeds.
#[path = "../exporter-ebpf/build_object.rs"]
mod build_object;

fn main() -> anyhow::Result<()> {
    build_object::build_ebpf_object(&["test-programs"])
}
