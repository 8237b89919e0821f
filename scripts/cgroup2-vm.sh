#!/usr/bin/env bash
# Runs end-to-end tests on a pure cgroup v2 host: a QEMU virtual machine booted with
# Debian's kernel and cgroup_no_v1=all, whose root is this machine's own, read-only
# over 9p under a throwaway overlay, so the tests run the binary and venv built here.
#
#   bash scripts/cgroup2-vm.sh                     # the containerizer's e2e tests
#   bash scripts/cgroup2-vm.sh -k oom           # pytest's arguments: these tests only
#   bash scripts/cgroup2-vm.sh tests/e2e/test_restart.py     # other test files
#
# Needs root, a debug build (or $MESETA_BIN), and what `bash scripts/test.sh --setup`
# installs: the venv, QEMU (qemu-system-x86) and a Debian kernel (linux-image-amd64).
# The guest has its own temporary directory (a tmpfs at $TMPDIR), loopback only, and
# no v1 hierarchy: cgroup2 is mounted at /sys/fs/cgroup with no controller enabled, as
# the agent finds a fresh host. The script exits with pytest's status inside the guest.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export MESETA_BIN=${MESETA_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/meseta}
MEMORY=${MESETA_VM_MEMORY:-8G}
CPUS=${MESETA_VM_CPUS:-$(nproc)}
DEFAULT_TESTS=(tests/e2e/test_containerizer.py tests/e2e/test_images.py
    tests/e2e/test_volume_ownership.py)

die() { echo "error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the guest's tests need root inside it)"
[ -x "$MESETA_BIN" ] || die "no meseta binary at $MESETA_BIN: run cargo build first"
[ -x "$ROOT/.venv/bin/python" ] || die "no venv at $ROOT/.venv: run bash scripts/test.sh --setup first"

command -v qemu-system-x86_64 >/dev/null || die "no QEMU: run bash scripts/test.sh --setup first"
ls /boot/vmlinuz-* >/dev/null 2>&1 || die "no kernel in /boot: run bash scripts/test.sh --setup first"
KERNEL=$(ls /boot/vmlinuz-* | sort -V | tail -1)
VERSION=${KERNEL#/boot/vmlinuz-}
MODULES=/lib/modules/$VERSION

# KVM where asked for; else QEMU's own translator, slower but it needs nothing (the
# machines this was written on have a /dev/kvm whose guests hang before the kernel's
# first line).
case ${MESETA_VM_ACCEL:-tcg} in
    kvm) [ -w /dev/kvm ] || die "MESETA_VM_ACCEL=kvm but /dev/kvm is missing or not writable"
        ACCEL=(-accel kvm -cpu host,-arch-capabilities) ;;
    tcg) ACCEL=(-accel tcg,thread=multi -cpu max) ;;
    *) die "MESETA_VM_ACCEL is kvm or tcg" ;;
esac

WORK=$(mktemp -d /tmp/meseta-cgroup2-vm.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# The initramfs: a static busybox, the modules that mount the root (9p over virtio,
# overlay), an init that builds the root and the guest's test run.
INITRD=$WORK/initrd
mkdir -p "$INITRD"/{bin,dev,proc,sys,lower,upper,newroot}
cp /bin/busybox "$INITRD/bin/busybox"
for tool in sh mount mkdir insmod switch_root cp cat poweroff sleep; do
    ln -s busybox "$INITRD/bin/$tool"
done
# Each module after the modules it needs, as modules.dep lists them.
modules_in_order() {
    local module=$1 dep
    for dep in $(grep "^[^:]*/$module\.ko:" "$MODULES/modules.dep" | cut -d: -f2-); do
        modules_in_order "$(basename "$dep" .ko)"
    done
    echo "$module"
}
: > "$INITRD/modules"
for module in $( (modules_in_order virtio_pci; modules_in_order 9pnet_virtio;
    modules_in_order 9p; modules_in_order overlay) | awk '!seen[$0]++'); do
    path=$(grep -o "^[^:]*/$module\.ko:" "$MODULES/modules.dep" | tr -d :)
    cp "$MODULES/$path" "$INITRD/$module.ko"
    echo "$module" >> "$INITRD/modules"
done

cat > "$INITRD/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for module in $(cat /modules); do insmod /$module.ko; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose host /lower
mount -t tmpfs -o size=2G upper /upper
mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work root /newroot
for dir in proc sys dev; do mount --move /$dir /newroot/$dir; done
mount -t tmpfs run /newroot/run
cp /guest.sh /newroot/run/meseta-guest.sh
exec switch_root /newroot /bin/sh /run/meseta-guest.sh
EOF
chmod +x "$INITRD/init"

# pytest's arguments; the default test files unless one names files of its own.
TESTS=("$@")
printf '%s\n' "$@" | grep -q '^tests/' || TESTS+=("${DEFAULT_TESTS[@]}")
{
    echo '#!/bin/sh'
    # Temporary files on a tmpfs of their own (the containerizer's overlays cannot sit on
    # the root's), and not over /tmp, where the checkout or the build may be.
    echo 'mkdir -p /run/tmp && export TMPDIR=/run/tmp'
    echo 'mount -t cgroup2 cgroup2 /sys/fs/cgroup'
    echo 'mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs shm /dev/shm'
    echo 'ip link set lo up'
    echo 'echo "guest: kernel $(uname -r), /sys/fs/cgroup is $(stat -f -c %T /sys/fs/cgroup), controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"'
    printf 'cd %q\n' "$ROOT"
    printf 'export MESETA_BIN=%q PATH=%q HOME=/root\n' "$MESETA_BIN" "$PATH"
    printf '.venv/bin/python -m pytest -p no:cacheprovider -q'
    printf ' %q' "${TESTS[@]}"
    echo
    echo 'echo "MESETA-VM-EXIT=$?"'
    echo 'poweroff -f'
} > "$INITRD/guest.sh"
(cd "$INITRD" && find . | cpio -o -H newc --quiet | gzip -1) > "$WORK/initrd.img"

LOG=$WORK/console.log
qemu-system-x86_64 "${ACCEL[@]}" -smp "$CPUS" -m "$MEMORY" -nographic -no-reboot \
    -kernel "$KERNEL" -initrd "$WORK/initrd.img" \
    -append "console=ttyS0 quiet cgroup_no_v1=all panic=-1 rdinit=/init" \
    -virtfs local,path=/,mount_tag=host,security_model=passthrough,readonly=on,multidevs=remap \
    -nic none | tee "$LOG"
status=$(grep -ao 'MESETA-VM-EXIT=[0-9]*' "$LOG" | tail -1 | cut -d= -f2)
[ -n "$status" ] || die "the guest ended without a test result (see the console output above)"
exit "$status"
