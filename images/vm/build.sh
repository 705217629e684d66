#!/usr/bin/env bash
# Build the demo virtual-machine disk (docs/VM.md, "The demo image"): a small
# qcow2 that SeaBIOS boots with syslinux into Debian's kernel and an
# initramfs whose userland is busybox. It prints its uptime and boot id once
# a second to the VGA console and the serial port, and keeps a boot counter
# on a second (home) disk.
#
# Usage: build.sh [--force] [OUTPUT]
#   OUTPUT  default /var/lib/streamspace/vm/demo.qcow2 (made world-readable:
#           QEMU under qemu:///system runs as libvirt-qemu and reads it as
#           the backing file of each session's overlay)
#   --force rebuild even when OUTPUT was made from this recipe
#
# Idempotent: OUTPUT.recipe holds the hash of this directory's files, and an
# image made from the same recipe is kept. The last line on stdout is the
# image's path (scripts/lib/demo-image.sh's vm_image, scripts/test.sh).
#
# Nothing is mounted (no root needed for the build itself, only to write
# OUTPUT's directory) and nothing is downloaded but two Debian packages
# (linux-image-amd64's kernel, busybox-static) through apt: the initramfs is
# made with cpio, the boot disk with mkfs.vfat -C, syslinux --install and
# mtools on a file, then qemu-img convert. Tools: scripts/install-deps.sh.
set -euo pipefail

log() { printf 'vm-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FORCE=0
if [[ ${1:-} == --force ]]; then
  FORCE=1
  shift
fi
OUT="${1:-/var/lib/streamspace/vm/demo.qcow2}"
# The files the image is made from, in a fixed order.
RECIPE_FILES=(build.sh inittab rcS rcK ticker syslinux.cfg)
RECIPE="$(cd "$HERE" && cat "${RECIPE_FILES[@]}" | sha256sum | cut -c1-16)"

if [[ $FORCE != 1 && -s $OUT && $(cat "$OUT.recipe" 2>/dev/null) == "$RECIPE" ]]; then
  log "$OUT: present, recipe $RECIPE"
  printf '%s\n' "$OUT"
  exit 0
fi

for tool in apt-get dpkg-deb tar cpio gzip depmod modprobe mkfs.vfat syslinux mcopy qemu-img; do
  # depmod, modprobe and mkfs.vfat live in /sbin, outside a user's PATH.
  command -v "$tool" >/dev/null 2>&1 || [[ -x /usr/sbin/$tool || -x /sbin/$tool ]] ||
    die "'$tool' not found (scripts/install-deps.sh installs the VM image's tools)"
done
export PATH="$PATH:/usr/sbin:/sbin"

START=$SECONDS
WORK="$(mktemp -d "${TMPDIR:-/tmp}/streamspace-vm.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
log "building $OUT (recipe $RECIPE)"

# 1. The packages: the kernel linux-image-amd64 currently points to, and
# busybox-static. apt resolves against an empty dpkg status so the answer
# does not depend on what the host has installed (images/lib/debian-rootfs.sh
# does the same for the container images); of the closure only these two are
# fetched (initramfs-tools, udev and the rest are what we replace).
SANDBOX=()
[[ $(id -u) -eq 0 ]] && SANDBOX=(-o APT::Sandbox::User=root)
: >"$WORK/empty-status"
fetch() {
  apt-get -s -q -o Dir::State::Status="$WORK/empty-status" \
    install --no-install-recommends linux-image-amd64 busybox-static >"$WORK/plan" 2>"$WORK/apt.log" ||
    return 1
  awk '/^Inst (linux-image-[0-9][^ ]*|busybox-static) /{ v = $3; gsub(/[()]/, "", v); print $2 "=" v }' \
    "$WORK/plan" >"$WORK/want"
  [[ $(wc -l <"$WORK/want") -eq 2 ]] || return 1
  mkdir -p "$WORK/debs"
  # shellcheck disable=SC2046
  (cd "$WORK/debs" && apt-get download -q "${SANDBOX[@]}" $(cat "$WORK/want")) >>"$WORK/apt.log" 2>&1
}
if ! fetch; then
  [[ $(id -u) -eq 0 ]] || die "apt could not resolve/download the kernel and busybox (try 'sudo apt-get update'): $(tail -n 5 "$WORK/apt.log")"
  log "apt lists look stale, running apt-get update"
  apt-get update -q >/dev/null || die "apt-get update failed"
  fetch || die "apt could not resolve/download the kernel and busybox: $(tail -n 5 "$WORK/apt.log")"
fi
log "packages: $(paste -sd' ' "$WORK/want")"

# 2. The kernel and the modules the guest loads (virtio disks, ext2 through
# the ext4 driver, the ACPI power button and its input events). The whole
# module tree (~400 MB) is never written: only these directories.
KDEB="$(echo "$WORK"/debs/linux-image-*.deb)"
mkdir -p "$WORK/kernel"
dpkg-deb --fsys-tarfile "$KDEB" | tar -x -C "$WORK/kernel" --wildcards \
  './boot/vmlinuz-*' './lib/modules/*/modules.order' './lib/modules/*/modules.builtin*' \
  './lib/modules/*/kernel/drivers/virtio/*' './lib/modules/*/kernel/drivers/block/*' \
  './lib/modules/*/kernel/fs/ext4/*' './lib/modules/*/kernel/fs/jbd2/*' './lib/modules/*/kernel/fs/mbcache.ko' \
  './lib/modules/*/kernel/lib/*' './lib/modules/*/kernel/crypto/*' \
  './lib/modules/*/kernel/drivers/acpi/*' './lib/modules/*/kernel/drivers/input/*'
KVER="$(basename "$(echo "$WORK"/kernel/lib/modules/*)")"
[[ -f $WORK/kernel/boot/vmlinuz-$KVER ]] || die "no vmlinuz-$KVER in $KDEB"
depmod -b "$WORK/kernel" "$KVER"

# 3. The initramfs: busybox and its applets, the scripts next to this one,
# the modules (with everything they depend on) and their modules.dep.
ROOT="$WORK/initramfs"
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc/init.d,etc/acpi/PWRF,proc,sys,dev,tmp,run,root,home/user}
dpkg-deb --fsys-tarfile "$WORK"/debs/busybox-static_*.deb | tar -x -O ./bin/busybox >"$ROOT/bin/busybox"
chmod 0755 "$ROOT/bin/busybox"
while IFS= read -r applet; do
  [[ -e $ROOT/$applet ]] || ln -s /bin/busybox "$ROOT/$applet"
done < <("$ROOT/bin/busybox" --list-full)
ln -s bin/busybox "$ROOT/init"
install -m 0644 "$HERE/inittab" "$ROOT/etc/inittab"
install -m 0755 "$HERE/rcS" "$HERE/rcK" "$HERE/ticker" "$ROOT/etc/init.d/"
printf '#!/bin/sh\nexec /sbin/poweroff\n' >"$ROOT/etc/acpi/PWRF/00000080"
chmod 0755 "$ROOT/etc/acpi/PWRF/00000080"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\n' >"$ROOT/etc/group"
printf 'streamspace-vm\n' >"$ROOT/etc/hostname"
chmod 1777 "$ROOT/tmp"
modprobe -d "$WORK/kernel" -S "$KVER" --show-depends -a \
  virtio_pci virtio_blk crc32c_generic ext4 button evdev >"$WORK/modules" ||
  die "modprobe could not resolve the guest's modules in $KVER"
MODDIR="lib/modules/$KVER"
mkdir -p "$ROOT/$MODDIR"
cp "$WORK/kernel/$MODDIR"/modules.{order,builtin,builtin.modinfo} "$ROOT/$MODDIR/"
awk '$1 == "insmod" { print $2 }' "$WORK/modules" | sort -u | while IFS= read -r ko; do
  rel="${ko#"$WORK/kernel/"}"
  mkdir -p "$ROOT/$(dirname "$rel")"
  cp "$ko" "$ROOT/$rel"
done
depmod -b "$ROOT" "$KVER"
(cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 >"$WORK/initrd.gz"

# 4. The boot disk: a FAT filesystem over the whole disk (no partition table:
# SeaBIOS boots its boot sector, which syslinux --install makes its own),
# with the kernel, the initramfs and syslinux.cfg. Its label, STREAMSPACE,
# tells the guest which virtio disk is not the home disk.
KB=$((($(stat -c %s "$WORK/kernel/boot/vmlinuz-$KVER") + $(stat -c %s "$WORK/initrd.gz")) / 1024 + 2048))
mkfs.vfat -C -n STREAMSPACE "$WORK/boot.img" "$KB" >/dev/null
syslinux --install "$WORK/boot.img"
mcopy -i "$WORK/boot.img" "$WORK/kernel/boot/vmlinuz-$KVER" ::vmlinuz
mcopy -i "$WORK/boot.img" "$WORK/initrd.gz" ::initrd.gz
mcopy -i "$WORK/boot.img" "$HERE/syslinux.cfg" ::syslinux.cfg

# 5. qcow2, written next to OUTPUT and renamed over it (a session being
# created meanwhile sees the old image or the new one, never half of one).
mkdir -p "$(dirname "$OUT")"
chmod 0755 "$(dirname "$OUT")" 2>/dev/null || true
TMP_OUT="$OUT.tmp.$$"
trap 'rm -rf "$WORK" "$TMP_OUT"' EXIT
qemu-img convert -q -f raw -O qcow2 "$WORK/boot.img" "$TMP_OUT"
chmod 0644 "$TMP_OUT"
mv -f "$TMP_OUT" "$OUT"
printf '%s\n' "$RECIPE" >"$OUT.recipe"
log "built $OUT: kernel $KVER, $(du -k "$OUT" | cut -f1) KiB on disk, $(($(stat -c %s "$WORK/boot.img") / 1048576)) MiB virtual ($((SECONDS - START)) s)"
printf '%s\n' "$OUT"
