#!/usr/bin/env bash
# Sets up what is missing and runs every test: unit tests and the kernel tests,
# which load the real eBPF programs and must run as root (they fail, not skip,
# when BPF cannot be loaded).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
if [[ $(id -u) -ne 0 ]]; then
    echo "test: the kernel tests load BPF programs; run as root" >&2
    exit 1
fi
cargo build --workspace --exclude exporter-ebpf --all-targets
cargo test --workspace --exclude exporter-ebpf --no-fail-fast -- --test-threads="${BADFD_TEST_THREADS:-2}"
# Deployment files: manifests, chart, unit, Containerfile (tests/deploy). The
# venv's cloudcoil package registers a pytest plugin the tests do not use.
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 /opt/badfd-venv/bin/python -m pytest tests/deploy -q -rs
