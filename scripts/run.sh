#!/usr/bin/env bash
# Sets up what is missing, builds badfd in release mode and runs it.
#   scripts/run.sh                 the exporter (badfd serve)
#   scripts/run.sh trace --err     any badfd subcommand and flags
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --bin badfd
[[ $# -eq 0 ]] && set -- serve
exec target/release/badfd "$@"
