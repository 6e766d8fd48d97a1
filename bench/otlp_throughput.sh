#!/usr/bin/env bash
# OTLP benchmark: records/s that the OTLP pipeline sustains to a local receiver
# (gRPC and HTTP/protobuf on 127.0.0.1) with no drop. Prints figures; asserts none.
#   bench/otlp_throughput.sh [SECONDS_PER_STEP]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p badfd-tests --bin otlp_throughput
exec target/release/otlp_throughput "$@"
