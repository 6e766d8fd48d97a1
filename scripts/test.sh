#!/usr/bin/env bash
# Sets up what is missing and runs every test: unit tests and the kernel tests,
# which load the real eBPF programs and must run as root (they fail, not skip,
# when BPF cannot be loaded), then the deployment checks. Every suite runs even
# when an earlier one fails; the exit status says whether all passed.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test || exit 1
if [[ $(id -u) -ne 0 ]]; then
    echo "test: the kernel tests load BPF programs; run as root" >&2
    exit 1
fi
failed=()
cargo build --workspace --exclude exporter-ebpf --all-targets || exit 1
cargo test --workspace --exclude exporter-ebpf --no-fail-fast -- --test-threads="${BADFD_TEST_THREADS:-2}" || failed+=(cargo)
# Deployment files: manifests, chart, unit, Containerfile (tests/deploy). The
# venv's cloudcoil package registers a pytest plugin the tests do not use.
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 /opt/badfd-venv/bin/python -m pytest tests/deploy -q -rs || failed+=(deploy)
# The kernel matrix: the kernel tests again inside qemu on Debian's 5.10 (the
# oldest supported), 6.1, 6.12 and 7.3 kernels, in each attach mode the kernel
# allows, plus the host row; it prints a table and fails if any row failed.
# Measured on 2 shared cores: 2.5 to 6 minutes with the static build and the
# kernels cached; from cold caches add the static build (7.5 minutes under
# load) and about 100 MB of kernel packages, so about 15 minutes at worst:
# CI runs it whole.
# BADFD_VM_KERNELS picks a subset ("5.10 7.3"); "none" keeps only the host row.
tests/vm/run.sh || failed+=(matrix)
if (( ${#failed[@]} )); then
    echo "test: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "test: all suites passed"
