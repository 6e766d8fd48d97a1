#!/usr/bin/env bash
# Installs what building and testing badfd needs on a fresh Debian machine, and
# does nothing (quickly) where it is already there. Idempotent; run as root.
#   scripts/setup.sh          build and kernel prerequisites
#   scripts/setup.sh --test   plus the tools the tests use (promtool, ...)
set -euo pipefail

want_test_tools=0
[[ "${1:-}" == "--test" ]] && want_test_tools=1

say() { printf 'setup: %s\n' "$*" >&2; }

# --- apt packages ----------------------------------------------------------
apt_packages=(pkg-config)
if (( want_test_tools )); then
    # promtool (prometheus) lints the exposition and tests alert rules.
    apt_packages+=(prometheus)
    # tmux: tests/trace.rs checks badfd trace's live table in a real terminal.
    apt_packages+=(tmux)
    # tests/security.rs: certificates (openssl) and a real TLS client (curl).
    apt_packages+=(openssl curl)
    # The deployment tests (tests/deploy): systemd-analyze verifies the unit,
    # strace records badfd's system calls for its filter, a venv for Python tools.
    apt_packages+=(systemd strace python3-venv)
    # The kernel matrix (tests/vm/run.sh): qemu boots Debian kernels from an
    # initramfs of busybox and the statically linked (stripped) kernel tests.
    # musl-tools: a C compiler for the static build (ring, under kube's rustls, builds C).
    apt_packages+=(qemu-system-x86 busybox-static cpio binutils musl-tools)
    # Its arm64 row: qemu-system-aarch64 (qemu-system-arm), and Debian's cross
    # toolchain as linker and C compiler of the aarch64-unknown-linux-musl
    # build (Rust's musl target brings its own crt and libc) and its strip;
    # the C compiler needs the target's headers (a recommendation, so named).
    apt_packages+=(qemu-system-arm gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
fi
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
    say "installing apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts the prometheus service on install; the tests run their own.
    if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null; then
        systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
    fi
fi

# --- Rust: the pinned nightly with rust-src (build-std for the BPF target) and
# bpf-linker, both pinned in exporter-ebpf/toolchain.env ----------------------
export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=../exporter-ebpf/toolchain.env
source "$(dirname "$0")/../exporter-ebpf/toolchain.env"
if ! rustup component list --toolchain "$RUST_NIGHTLY" --installed 2>/dev/null | grep -q '^rust-src'; then
    say "installing the pinned toolchain $RUST_NIGHTLY with rust-src"
    rustup toolchain install "$RUST_NIGHTLY" --profile minimal --component rust-src
fi
if ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
    say "installing bpf-linker $BPF_LINKER_VERSION (about 2 minutes)"
    cargo install bpf-linker --version "$BPF_LINKER_VERSION" --locked --force
fi

# The kernel matrix runs statically linked test binaries in its VMs, x86_64
# and aarch64 (its arm64 row).
if (( want_test_tools )); then
    for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
        if ! rustup target list --installed | grep -qx "$target"; then
            say "adding the Rust target $target"
            rustup target add "$target"
        fi
    done
fi

# --- kernel interfaces -------------------------------------------------------
if [[ ! -d /sys/kernel/tracing/events ]]; then
    say "mounting tracefs at /sys/kernel/tracing"
    mount -t tracefs nodev /sys/kernel/tracing
fi
# securityfs tells whether the kernel is locked down (which forbids fentry).
if [[ ! -e /sys/kernel/security/lockdown ]] && [[ -d /sys/kernel/security ]]; then
    mount -t securityfs securityfs /sys/kernel/security 2>/dev/null || true
fi

# --- Python tools of the deployment tests, in their own venv ------------------
if (( want_test_tools )); then
    venv=/opt/badfd-venv
    requirements="$(dirname "$0")/../tests/deploy/requirements.txt"
    stamp="$venv/.requirements.sha256"
    want="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [[ ! -x "$venv/bin/python" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
        say "installing the deployment test tools into $venv"
        /usr/bin/python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
        echo "$want" > "$stamp"
    fi
fi
