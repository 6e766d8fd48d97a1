#!/usr/bin/env bash
# The kernel matrix: runs badfd's kernel tests inside qemu on other Debian
# kernels, in every attach mode each allows, and on the host kernel, then prints
# a table (kernel, attach mode, tests passed/failed) and fails if any row failed.
#
#   tests/vm/run.sh                    every kernel in tests/vm/kernels, and the host
#   tests/vm/run.sh 5.10 7.3           only these (names from tests/vm/kernels)
#   tests/vm/run.sh --list-available   the cloud kernels the apt suites offer now
#   tests/vm/run.sh --bench [6.12 ...] not the matrix: runs bench/opens (static, release)
#                                      in each kernel's guest (6.12 if none given), once per
#                                      attach mode of the kernel's row (fentry, tracepoint),
#                                      and prints its tables; slow (emulated), never in CI
#
# Environment:
#   BADFD_VM_KERNELS   kernel names to run when none are given ("all", the default,
#                      or e.g. "5.10 7.3"; "none" runs the host row only); a name may
#                      carry its attach modes, "6.12:fentry", instead of the table's,
#                      and then its test binaries, "5.10:auto:kernel+hostile", instead
#                      of BADFD_VM_TESTS
#   BADFD_VM_HOST      1 (default) adds the host kernel's row; 0 leaves it out
#   BADFD_VM_TESTS     test binaries of the badfd-tests crate to run (default: kernel
#                      verifier hostile; verifier's counts are printed as a table at
#                      the end), in the host row and every row that names none
#   BADFD_VM_CACHE     where kernels and apt state are cached (/var/cache/badfd-kernels)
#   BADFD_VM_TIMEOUT   seconds a VM may run before it counts as failed (default 900)
#   BADFD_VM_ACCEL     kvm, tcg or auto (default: KVM only where it can run a stock kernel)
#   BADFD_VM_BENCH_ARGS  --bench: arguments of opens besides --attach (default:
#                      "--rounds 6 --iters 20000 --reader-wait poll", sized for TCG)
#   BADFD_VM_QEMU_EXTRA  more qemu arguments; --bench under TCG defaults to
#                      "-icount shift=0,sleep=off" (guest time = instructions)
#
# Kernels are Debian packages fetched with apt through a private configuration
# (its own sources list, lists and cache under $BADFD_VM_CACHE/apt) and unpacked
# with dpkg -x, never installed; the system's apt sources are left alone. Only
# the vmlinuz of each is kept. Needs root (for the host row and the apt cache),
# qemu-system-x86, busybox-static and cpio (scripts/setup.sh --test installs them).
#
# A row's architecture is its Debian package's (`...-cloud-amd64-unsigned`,
# `...-cloud-arm64-unsigned`). arm64 rows boot in qemu-system-aarch64 (always
# emulated: -M virt -cpu max) from an initramfs of the arm64 busybox-static
# package (fetched as the kernels are) and the tests built statically for
# aarch64-unknown-linux-musl with Debian's cross toolchain (gcc-aarch64-linux-gnu
# links them and compiles their C); scripts/setup.sh --test installs both.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
KERNELS_FILE=$ROOT/tests/vm/kernels
CACHE=${BADFD_VM_CACHE:-/var/cache/badfd-kernels}
TIMEOUT=${BADFD_VM_TIMEOUT:-900}
TESTS=${BADFD_VM_TESTS:-kernel verifier hostile}
LOG_DIR=$ROOT/target/vm-logs
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf 'vm: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

# --- the kernel table ---------------------------------------------------------
# Fills NAMES, and SUITE/PACKAGE/MODES by name.
declare -a NAMES=()
declare -A SUITE=() PACKAGE=() MODES=() ROW_TESTS=()
while read -r name suite package modes; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    NAMES+=("$name")
    SUITE[$name]=$suite
    PACKAGE[$name]=$package
    MODES[$name]=$modes
done <"$KERNELS_FILE"

# --- architectures ----------------------------------------------------------------
# Debian's name of a row's architecture, from its kernel package's name.
row_arch() {
    case ${PACKAGE[$1]} in
        *-amd64|*-amd64-unsigned) echo amd64 ;;
        *-arm64|*-arm64-unsigned) echo arm64 ;;
        *) die "$KERNELS_FILE: cannot tell the architecture of ${PACKAGE[$1]} (expected ...-amd64 or ...-arm64)" ;;
    esac
}
# The Rust target of the static test binaries, the qemu that boots the kernel,
# and the kernel's serial console, per architecture.
declare -A RUST_TARGET=([amd64]=x86_64-unknown-linux-musl [arm64]=aarch64-unknown-linux-musl)
declare -A QEMU=([amd64]=qemu-system-x86_64 [arm64]=qemu-system-aarch64)
declare -A CONSOLE=([amd64]=ttyS0 [arm64]=ttyAMA0)
declare -A STRIP=([amd64]=strip [arm64]=aarch64-linux-gnu-strip)
case $(uname -m) in
    x86_64) HOST_ARCH=amd64 ;;
    aarch64) HOST_ARCH=arm64 ;;
    *) HOST_ARCH=$(uname -m) ;;
esac
# Debian's cross toolchain links the aarch64 musl build and compiles its C
# (ring); Rust's musl target brings its own crt objects and libc.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar
for name in "${NAMES[@]}"; do row_arch "$name" >/dev/null; done

# --- private apt ----------------------------------------------------------------
APT_DIR=$CACHE/apt
apt_ready=0
private_apt() {
    (( apt_ready )) && return 0
    mkdir -p "$APT_DIR"/{etc,lists/partial,archives/partial,cache}
    local suites
    suites=$(printf '%s\n' "${SUITE[@]}" | sort -u)
    # arm64 indexes only for the suites of arm64 rows (their kernel and busybox).
    {
        for s in $suites; do
            local archs=amd64 n
            for n in "${NAMES[@]}"; do
                [[ ${SUITE[$n]} == "$s" && $(row_arch "$n") == arm64 ]] && archs=amd64,arm64
            done
            echo "deb [arch=$archs signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $s main"
        done
    } >"$APT_DIR/etc/sources.list.new"
    cat >"$APT_DIR/etc/apt.conf" <<EOF
Dir::Etc::SourceList "$APT_DIR/etc/sources.list";
Dir::Etc::SourceParts "/nonexistent";
Dir::State::Lists "$APT_DIR/lists";
Dir::Cache "$APT_DIR/cache";
Dir::Cache::Archives "$APT_DIR/archives";
APT::Architecture "amd64";
APT::Architectures { "amd64"; "arm64"; };
APT::Sandbox::User "root";
Acquire::Languages "none";
Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";
Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled "false";
Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled "false";
EOF
    export APT_CONFIG=$APT_DIR/etc/apt.conf
    # Refresh the lists when the suites changed or they are a day old.
    if ! cmp -s "$APT_DIR/etc/sources.list.new" "$APT_DIR/etc/sources.list" \
        || [[ -z $(find "$APT_DIR/lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 -print -quit) ]]; then
        mv "$APT_DIR/etc/sources.list.new" "$APT_DIR/etc/sources.list"
        say "updating the private apt lists ($(echo $suites))"
        apt-get update -qq || die "apt-get update failed for the private sources in $APT_DIR/etc/sources.list"
    fi
    apt_ready=1
}

if [[ "${1:-}" == "--list-available" ]]; then
    private_apt
    apt-cache search --names-only '^linux-(image|binary-unsigned)-[0-9].*-cloud-(amd64|arm64)' | grep -v -- '-dbg' | sort -V
    exit 0
fi

# --bench: the guests run bench/opens instead of the kernel tests (see the top).
bench=0
if [[ "${1:-}" == "--bench" ]]; then
    bench=1
    shift
fi
BENCH_ARGS=${BADFD_VM_BENCH_ARGS:---rounds 6 --iters 20000 --reader-wait poll}

# Prints the path of the cached vmlinuz of kernel $1, fetching it if needed.
kernel_image() {
    local name=$1 package=${PACKAGE[$1]}
    local dir=$CACHE/kernels/$package
    if [[ ! -s $dir/vmlinuz ]]; then
        private_apt
        local work
        work=$(mktemp -d)
        say "downloading $package (${SUITE[$name]})"
        (cd "$work" && apt-get download -q "$package:$(row_arch "$name")" >&2) \
            || die "cannot download $package: pick a version that exists (tests/vm/run.sh --list-available) and update $KERNELS_FILE"
        dpkg -x "$work"/*.deb "$work/root"
        local image
        image=$(find "$work/root/boot" "$work/root/usr/lib/modules" -name 'vmlinuz*' -type f 2>/dev/null | head -n1)
        [[ -n "$image" ]] || die "$package holds no vmlinuz"
        mkdir -p "$dir"
        cp "$image" "$dir/vmlinuz.tmp" && mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
        rm -rf "$work"
    fi
    echo "$dir/vmlinuz"
}

# --- what to run ------------------------------------------------------------------
declare -a selected=()
if (( $# )); then
    selected=("$@")
else
    default_kernels=all
    (( bench )) && default_kernels=6.12
    wanted=${BADFD_VM_KERNELS:-$default_kernels}
    case "$wanted" in
        all) selected=("${NAMES[@]}") ;;
        none) selected=() ;;
        *) read -r -a selected <<<"$wanted" ;;
    esac
fi
for i in "${!selected[@]}"; do
    name=${selected[$i]%%:*}
    [[ -n "${PACKAGE[$name]:-}" ]] || die "unknown kernel '$name'; known: ${NAMES[*]} (see $KERNELS_FILE)"
    ROW_TESTS[$name]=$TESTS
    if [[ "${selected[$i]}" == *:* ]]; then
        IFS=: read -r _ modes row_tests <<<"${selected[$i]}"
        MODES[$name]=$modes
        [[ -n "$row_tests" ]] && ROW_TESTS[$name]=${row_tests//+/ }
    fi
    selected[$i]=$name
done
run_host=${BADFD_VM_HOST:-1}
# Every test binary some row runs: built and packed once per architecture.
ALL_TESTS=$TESTS
for name in "${selected[@]}"; do
    for t in ${ROW_TESTS[$name]}; do
        [[ " $ALL_TESTS " == *" $t "* ]] || ALL_TESTS+=" $t"
    done
done
# The host's own figures come from running the bench there (bench/RESULTS.md).
(( bench )) && run_host=0

# The architectures to boot (the selected rows') and to build the static test
# binaries for (those, and the host's for its row).
declare -a BOOT_ARCHS=() BUILD_ARCHS=()
for name in "${selected[@]}"; do
    arch=$(row_arch "$name")
    [[ " ${BOOT_ARCHS[*]} " == *" $arch "* ]] || BOOT_ARCHS+=("$arch")
done
BUILD_ARCHS=("${BOOT_ARCHS[@]}")
if [[ $run_host == 1 ]]; then
    [[ -n "${RUST_TARGET[$HOST_ARCH]:-}" ]] || die "the host row needs an amd64 or arm64 host, not $(uname -m)"
    [[ " ${BUILD_ARCHS[*]} " == *" $HOST_ARCH "* ]] || BUILD_ARCHS+=("$HOST_ARCH")
fi

tools=(cpio)
for arch in "${BUILD_ARCHS[@]}"; do
    tools+=("${STRIP[$arch]}")
    [[ $arch == arm64 && $HOST_ARCH != arm64 ]] && tools+=(aarch64-linux-gnu-gcc)
done
for arch in "${BOOT_ARCHS[@]}"; do
    tools+=("${QEMU[$arch]}")
    # Guests of the host's architecture get the host's busybox (busybox-static).
    [[ $arch == "$HOST_ARCH" ]] && tools+=(busybox)
done
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null || die "$tool is missing: run scripts/setup.sh --test"
done
[[ $(id -u) -eq 0 ]] || die "run as root (the host row loads BPF; the kernel cache is in $CACHE)"

# --- static test binaries -----------------------------------------------------------
# By architecture: TEST_BIN[arch/test], BADFD_BIN[arch], WORKLOAD[arch], OPENS_BIN[arch].
declare -A TEST_BIN=() BADFD_BIN=() WORKLOAD=() OPENS_BIN=()
for arch in "${BUILD_ARCHS[@]}"; do
    target=${RUST_TARGET[$arch]}
    if ! rustup target list --installed | grep -qx "$target"; then
        say "adding the Rust target $target"
        rustup target add "$target" >&2
    fi
    build_started=$(date +%s)
    if (( bench )); then
        say "building bench/opens (release) for $target"
        cargo build --release -p badfd-bench --bin opens --target "$target" >&2 || die "the static build of bench/opens failed"
        OPENS_BIN[$arch]=$ROOT/target/$target/release/opens
    else
        say "building the kernel tests for $target"
        build_log=$(mktemp)
        # Only the test binaries the guests run: each is a full static link.
        test_args=()
        for t in $ALL_TESTS; do test_args+=(--test "$t"); done
        if ! cargo test -p badfd-tests --no-run --target "$target" "${test_args[@]}" 2>"$build_log"; then
            cat "$build_log" >&2
            die "the static build of the kernel tests failed"
        fi
        for t in $ALL_TESTS; do
            bin=$(sed -n "s|^ *Executable tests/$t\.rs (\(.*\))\$|\1|p" "$build_log" | tail -n1)
            [[ -n "$bin" ]] || die "no test binary tests/$t.rs in the badfd-tests crate"
            TEST_BIN[$arch/$t]=$ROOT/$bin
        done
        rm -f "$build_log"
        # The badfd binary too: a kernel test runs it (its one-line error without capabilities).
        cargo build -p badfd --bin badfd --target "$target" >&2 || die "the static build of badfd failed"
        BADFD_BIN[$arch]=$ROOT/target/$target/debug/badfd
        WORKLOAD[$arch]=$ROOT/target/$target/debug/workload
        [[ -x ${WORKLOAD[$arch]} ]] || die "the workload was not built at ${WORKLOAD[$arch]}"
    fi
    say "static build for $target: $(( $(date +%s) - build_started )) s"
done

# Prints the path of a static busybox for guests of architecture $1: the
# host's (busybox-static) for its own architecture; for another, Debian's
# busybox-static of that architecture, fetched and unpacked as the kernels are.
guest_busybox() {
    local arch=$1 busybox
    if [[ $arch == "$HOST_ARCH" ]]; then
        busybox=$(command -v busybox)
    else
        local dir=$CACHE/busybox/$arch
        busybox=$dir/busybox
        if [[ ! -s $busybox ]]; then
            private_apt
            local work
            work=$(mktemp -d)
            say "downloading busybox-static:$arch"
            (cd "$work" && apt-get download -q "busybox-static:$arch" >&2) || die "cannot download busybox-static:$arch"
            dpkg -x "$work"/*.deb "$work/root"
            local found
            found=$(find "$work/root" -name busybox -type f -perm -u+x | head -n1)
            [[ -n "$found" ]] || die "busybox-static:$arch holds no busybox"
            mkdir -p "$dir"
            cp "$found" "$busybox.tmp" && mv "$busybox.tmp" "$busybox"
            rm -rf "$work"
        fi
    fi
    # readelf reads any architecture's ELF (ldd only the host's).
    readelf -l "$busybox" | grep -q 'program interpreter' && die "$busybox is not static: install busybox-static"
    echo "$busybox"
}

# --- the initramfs ---------------------------------------------------------------------
# One per architecture booted: $work/initramfs-<arch>.cpio.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
make_initramfs() {
    local arch=$1 busybox
    local stage=$work/stage-$arch strip=${STRIP[$arch]}
    busybox=$(guest_busybox "$arch")
    mkdir -p "$stage"/{bin,dev,proc,sys,tmp,badfd/tests}
    cp "$busybox" "$stage/bin/busybox"
    if (( bench )); then
        "$strip" -o "$stage/badfd/opens" "${OPENS_BIN[$arch]}"
        printf '%s\n' "$BENCH_ARGS" >"$stage/badfd/bench-args"
    else
        for t in $ALL_TESTS; do
            "$strip" -o "$stage/badfd/tests/$t" "${TEST_BIN[$arch/$t]}"
        done
        "$strip" -o "$stage/badfd/workload" "${WORKLOAD[$arch]}"
        "$strip" -o "$stage/badfd/badfd" "${BADFD_BIN[$arch]}"
    fi
    cat >"$stage/init" <<'EOF'
#!/bin/busybox sh
# badfd's kernel matrix: mount what the kernel tests need, run them (or, with
# --bench, bench/opens) in every attach mode named on the kernel command line
# (badfd.modes=a,b), the test binaries named there (badfd.tests=a,b), print
# result markers on the console and power off.
/bin/busybox --install -s /bin
export PATH=/bin HOME=/ TMPDIR=/tmp RUST_BACKTRACE=1 BADFD_WORKLOAD=/badfd/workload
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
mount -t securityfs securityfs /sys/kernel/security
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /tmp
modes=$(sed -n 's/.*badfd\.modes=\([^ ]*\).*/\1/p' /proc/cmdline)
tests=$(sed -n 's/.*badfd\.tests=\([^ ]*\).*/\1/p' /proc/cmdline)
echo
echo "BADFD-VM-KERNEL release=$(uname -r) lockdown=$(cat /sys/kernel/security/lockdown 2>/dev/null | tr ' ' ,)"
for mode in $(echo "$modes" | tr , ' '); do
    if [ -x /badfd/opens ]; then
        echo "BADFD-VM-BEGIN mode=$mode test=opens"
        /badfd/opens $(cat /badfd/bench-args) --attach "$mode" 2>&1
        echo "BADFD-VM-END mode=$mode test=opens exit=$?"
        continue
    fi
    for t in $(echo "$tests" | tr , ' '); do
        t=/badfd/tests/$t
        echo "BADFD-VM-BEGIN mode=$mode test=${t##*/}"
        BADFD_TEST_ATTACH=$mode "$t" --test-threads=1 --show-output 2>&1
        echo "BADFD-VM-END mode=$mode test=${t##*/} exit=$?"
    done
done
poweroff -f
EOF
    chmod +x "$stage/init"
    (cd "$stage" && find . | cpio -o -H newc --quiet >"$work/initramfs-$arch.cpio")
    say "initramfs for $arch: $(du -h "$work/initramfs-$arch.cpio" | cut -f1)"
}
for arch in "${BOOT_ARCHS[@]}"; do
    make_initramfs "$arch"
done

# --- accelerator -------------------------------------------------------------------------
# For guests of the host's architecture. /dev/kvm can be a paravirtual
# backend (kvm_pvm) that cannot run stock kernels. Guests of another
# architecture are always emulated.
accel=${BADFD_VM_ACCEL:-auto}
if [[ $accel == auto ]]; then
    accel=tcg
    if [[ -r /dev/kvm && -w /dev/kvm && ! -d /sys/module/kvm_pvm ]] \
        && { [[ -d /sys/module/kvm_intel ]] || [[ -d /sys/module/kvm_amd ]]; }; then
        accel=kvm
    fi
fi
case $accel in
    kvm) qemu_accel=(-accel kvm -cpu host) ;;
    # Single-threaded TCG: multi-threaded TCG double-faults stock kernels on
    # cmpxchg16b on some hosts (seen on this project's CI machines); two vCPUs
    # still run, interleaved, so per-CPU maps are summed over more than one CPU.
    tcg) qemu_accel=(-accel tcg,thread=single -cpu max) ;;
    *) die "BADFD_VM_ACCEL=$accel: expected kvm, tcg or auto" ;;
esac
# The qemu command line before the kernel, and the accelerator, of a guest of
# architecture $1 (into qemu_cmd and guest_accel).
qemu_for() {
    local arch=$1
    if [[ $arch == "$HOST_ARCH" && $arch == amd64 ]]; then
        qemu_cmd=(qemu-system-x86_64 "${qemu_accel[@]}")
        guest_accel=$accel
    elif [[ $arch == arm64 ]]; then
        # The virt board, emulated (single-threaded as above, for the same
        # interleaving of two vCPUs). pauth-impdef: the CPU's pointer
        # authentication with an implementation-defined algorithm, which TCG
        # computes several times faster than the architected QARMA5.
        qemu_cmd=(qemu-system-aarch64 -M virt -accel tcg,thread=single -cpu max,pauth-impdef=on)
        guest_accel=tcg
    else
        die "no qemu set-up for $arch guests on a $HOST_ARCH host"
    fi
}
# Extra qemu arguments. --bench under TCG defaults to instruction counting: the
# guest's clock then advances 1 ns per executed instruction (of either vCPU), so
# its timings are instruction counts that do not move with the host's load
# (wall-clock TCG timings here varied by 2x between rounds). Set it empty to
# time by the host's clock instead. They come after -m and -smp, so they may
# override those (6.1 hangs bringing up its second CPU under icount: "-smp 1").
qemu_extra_default=""
(( bench )) && [[ $accel == tcg ]] && qemu_extra_default="-icount shift=0,sleep=off"
read -r -a qemu_extra <<<"${BADFD_VM_QEMU_EXTRA-$qemu_extra_default}"

# --- results ---------------------------------------------------------------------------------
# --bench keeps its console logs apart, so a bench run leaves the matrix's logs be.
(( bench )) && LOG_DIR=$LOG_DIR/bench
mkdir -p "$LOG_DIR"
rm -f "$LOG_DIR"/*.log "$LOG_DIR"/*.log.boot-failure-*
declare -a rows=()
failed_rows=0

# Appends one row per mode and test (of the tests $4) from a log with BADFD-VM markers.
collect() {
    local label=$1 log=$2 modes=$3 tests=$4 release
    release=$(sed -n 's/.*BADFD-VM-KERNEL release=\([^ ]*\).*/\1/p' "$log" | head -n1)
    [[ -n "$release" ]] || release="$label (did not boot)"
    for mode in ${modes//,/ }; do
        for t in $tests; do
            local section passed failed ignored rc status reruns
            # Markers may follow console noise on their line, never precede it.
            section=$(awk -v b="BADFD-VM-BEGIN mode=$mode test=$t" -v e="BADFD-VM-END mode=$mode test=$t exit=" \
                'substr($0, length($0) - length(b) + 1) == b {on = 1; next} index($0, e) {print; on = 0} on' "$log")
            rc=$(sed -n 's/.*BADFD-VM-END .* exit=\([0-9]*\)$/\1/p' <<<"$section")
            read -r passed failed ignored < <(sed -n \
                's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed; \([0-9]*\) ignored.*/\1 \2 \3/p' \
                <<<"$section" | tail -n1) || true
            passed=${passed:--} failed=${failed:--} ignored=${ignored:--}
            if [[ -z "$rc" ]]; then
                status="FAIL (no result: timeout or crash)"
            elif [[ "$rc" != 0 || "$failed" != 0 || "$passed" == - || "$passed" == 0 || "$ignored" != 0 ]]; then
                status="FAIL (exit $rc)"
            else
                status=ok
                reruns=$(grep -c 'running it again' <<<"$section" || true)
                (( reruns == 0 )) || status="ok ($reruns workload rerun(s) after kernel-counted program skips)"
            fi
            [[ $status == ok* ]] || failed_rows=$((failed_rows + 1))
            rows+=("$release|$mode|$t|$passed|$failed|$status|$log")
        done
    done
}

# --bench: prints what opens printed in each mode and appends one row per mode
# (ok when it ran to the end).
collect_bench() {
    local label=$1 log=$2 modes=$3 release
    release=$(sed -n 's/.*BADFD-VM-KERNEL release=\([^ ]*\).*/\1/p' "$log" | head -n1)
    [[ -n "$release" ]] || release="$label (did not boot)"
    for mode in ${modes//,/ }; do
        local section rc status
        section=$(awk -v b="BADFD-VM-BEGIN mode=$mode test=opens" -v e="BADFD-VM-END mode=$mode test=opens exit=" \
            'substr($0, length($0) - length(b) + 1) == b {on = 1; next} index($0, e) {print; on = 0} on' "$log")
        rc=$(sed -n 's/.*BADFD-VM-END .* exit=\([0-9]*\)$/\1/p' <<<"$section")
        printf '\n===== guest %s (%s%s), opens --attach %s %s =====\n' "$release" "$guest_accel" \
            "${qemu_extra[*]:+ ${qemu_extra[*]}}" "$mode" "$BENCH_ARGS"
        grep -v 'BADFD-VM-END' <<<"$section" || true
        if [[ -z "$rc" ]]; then
            status="FAIL (no result: timeout or crash)"
        elif [[ "$rc" != 0 ]]; then
            status="FAIL (exit $rc)"
        else
            status=ok
        fi
        [[ $status == ok ]] || failed_rows=$((failed_rows + 1))
        rows+=("$release|$mode|opens|-|-|$status|$log")
    done
}

started=$(date +%s)
if [[ $run_host == 1 ]]; then
    log=$LOG_DIR/host.log
    say "host kernel $(uname -r): mode auto"
    {
        echo "BADFD-VM-KERNEL release=$(uname -r)"
        for t in $TESTS; do
            echo "BADFD-VM-BEGIN mode=auto test=$t"
            set +e
            BADFD_TEST_ATTACH=auto BADFD_WORKLOAD=${WORKLOAD[$HOST_ARCH]} "${TEST_BIN[$HOST_ARCH/$t]}" --test-threads=1 --show-output 2>&1
            echo "BADFD-VM-END mode=auto test=$t exit=$?"
            set -e
        done
    } >"$log"
    collect host "$log" auto "$TESTS"
fi

crashed_rows=()
for name in "${selected[@]}"; do
    vmlinuz=$(kernel_image "$name")
    arch=$(row_arch "$name")
    qemu_for "$arch"
    log=$LOG_DIR/$name.log
    say "kernel $name ($arch, $guest_accel): modes ${MODES[$name]}, tests ${ROW_TESTS[$name]}; console log in ${log#"$ROOT"/}"
    row_tests=${ROW_TESTS[$name]}
    t0=$(date +%s)
    # A kernel that crashes before it reaches /init is emulation trouble (TCG
    # on this project's CI machines now and then corrupts early boot), not a
    # badfd result: boot it again, at most twice, and say so. Anything from
    # /init on counts as it is.
    for attempt in 1 2 3; do
        set +e
        timeout -k 10 "$TIMEOUT" "${qemu_cmd[@]}" -m 1G -smp 2 "${qemu_extra[@]}" \
            -kernel "$vmlinuz" -initrd "$work/initramfs-$arch.cpio" \
            -append "console=${CONSOLE[$arch]} panic=-1 quiet badfd.modes=${MODES[$name]} badfd.tests=${row_tests// /,}" \
            -nographic -no-reboot -nodefaults -serial stdio -monitor none </dev/null 2>&1 | stdbuf -oL tr -d '\r' >"$log"
        set -e
        if ! grep -aq 'BADFD-VM-KERNEL release=' "$log"; then
            cp "$log" "$log.boot-failure-$attempt"
            say "kernel $name crashed before /init (attempt $attempt; log in ${log#"$ROOT"/}.boot-failure-$attempt)"
            continue
        fi
        # A guest kernel that oopses or panics mid-run without any test's end
        # marker after it: under TCG this has been 6.12 double-faulting in the
        # allocator during an exec or a fork storm, and corrupting lists or
        # the scheduler's state in a fork storm, the same with badfd not
        # loaded at all (docs/kernels.md), never in a badfd program. Run it
        # again once, say so, and keep the log; a second crash is a failure.
        if (( attempt == 1 )) && grep -aqE 'Kernel panic|Oops:' "$log" \
            && ! sed -n '/Kernel panic\|Oops:/,$p' "$log" | grep -aq 'BADFD-VM-END'; then
            cp "$log" "$log.crash-$attempt"
            say "KERNEL $name CRASHED during the tests (attempt $attempt; log in ${log#"$ROOT"/}.crash-$attempt): running it again once"
            crashed_rows+=("$name")
            continue
        fi
        break
    done
    say "kernel $name: $(( $(date +%s) - t0 )) s"
    if (( bench )); then
        collect_bench "$name" "$log" "${MODES[$name]}"
    else
        collect "$name" "$log" "${MODES[$name]}" "$row_tests"
    fi
done

# --- the table ---------------------------------------------------------------------------------
printf '\n%-34s %-11s %-8s %7s %7s  %s\n' kernel "attach" test passed failed result
for row in "${rows[@]}"; do
    IFS='|' read -r release mode t passed failed status log <<<"$row"
    printf '%-34s %-11s %-8s %7s %7s  %s\n' "$release" "$mode" "$t" "$passed" "$failed" "$status"
done
# The verifier's work per program and kernel (tests/verifier.rs prints a
# `verifier: kernel=.. mode=.. timing=.. program=.. insns=..` line per program).
if (( ! bench )); then
    verifier_lines=$(cat "$LOG_DIR"/*.log 2>/dev/null | tr -d '\r' | grep -ao 'verifier: kernel=[^ ]* mode=[^ ]* timing=[^ ]* program=[^ ]* insns=[^ ]*' | sort -u || true)
    if [[ -n "$verifier_lines" ]]; then
        printf '\nverifier: instructions processed per program (shipped programs must stay <= 100000)\n'
        printf '%-34s %-11s %-10s %-28s %8s\n' kernel attach timing program insns
        sed 's/verifier: kernel=\([^ ]*\) mode=\([^ ]*\) timing=\([^ ]*\) program=\([^ ]*\) insns=\([^ ]*\)/\1 \2 \3 \4 \5/' <<<"$verifier_lines" \
            | sort -k1,1V -k2,2 -k3,3 -k4,4 | while read -r k m t p n; do printf '%-34s %-11s %-10s %-28s %8s\n' "$k" "$m" "$t" "$p" "$n"; done
        cat "$LOG_DIR"/*.log 2>/dev/null | tr -d '\r' | grep -ao 'verifier: kernel=[^ ]* \(has no verified_insns\|mode=fentry refused\|program=bench_emit needs\).*' | sort -u || true
    fi
fi
say "matrix took $(( $(date +%s) - started )) s (accelerator: $accel for $HOST_ARCH guests, tcg for any other)"
(( ${#crashed_rows[@]} == 0 )) || say "guest kernels that crashed once and were run again: ${crashed_rows[*]} (logs *.crash-1 in ${LOG_DIR#"$ROOT"/})"
if (( failed_rows )); then
    say "$failed_rows row(s) failed; the console logs are in ${LOG_DIR#"$ROOT"/}"
    exit 1
fi
