#!/bin/bash
# tests/nested/setup.sh - prepare the nested-KVM harness (idempotent).
#
# Installs QEMU, busybox-static and cpio from Debian, downloads (never
# installs) a Debian kernel package into build/nested/, and builds an
# initramfs holding busybox, the 9p/virtio modules needed to mount the host
# and kvm.ko + kvm-amd.ko with their dependencies.  run-in-kvm.sh boots it.
#
# Re-running is cheap: each step is skipped when its output exists.
# NESTED_KVER=linux-image-<ver>-amd64 picks a kernel package; default is the
# one linux-image-amd64 depends on.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cache="$root/build/nested"
pkgs="qemu-system-x86 busybox-static cpio binutils"

die() { echo "nested/setup: $*" >&2; exit 1; }
[ "${1:-}" = --packages ] && { echo $pkgs; exit 0; }	# for make deps

mkdir -p "$cache"
cd "$cache"
# Several run-in-kvm.sh may start at once; one of them installs and builds.
exec 9> "$cache/.setup.lock"
flock 9

# 1. Host packages.
missing=""
for p in $pkgs; do
	dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "nested/setup: missing packages; run as root:" >&2
		echo "  sudo apt-get install -y --no-install-recommends$missing" >&2
		exit 1
	fi
	echo "nested/setup: installing$missing"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends $missing >/dev/null
fi

# 2. Kernel package: downloaded and unpacked into the cache, not installed.
# The package resolved first is remembered, so later runs use the same
# kernel and skip apt-cache; delete build/nested/kpkg to pick a newer one.
resolve_kpkg() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
# apt-get download warns that it runs unsandboxed when _apt cannot write
# the cache dir; harmless, so that line is filtered.
download() {
	rm -f "$cache"/linux-image-*.deb
	apt-get download "$1" 2>&1 |
		grep -v '^W: Download is performed unsandboxed' >&2 || true
	ls "$cache"/"$1"_*.deb 2>/dev/null | head -1 || true
}
kpkg=${NESTED_KVER:-$(cat "$cache/kpkg" 2>/dev/null || true)}
[ -n "$kpkg" ] || kpkg=$(resolve_kpkg)
kver=${kpkg#linux-image-}
kroot="$cache/kroot-$kver"
if [ -z "$kpkg" ] || [ ! -f "$kroot/boot/vmlinuz-$kver" ]; then
	deb=""
	[ -n "$kpkg" ] && deb=$(download "$kpkg")
	# Stale package lists, or the remembered version left the archive
	# (security updates replace the ABI-numbered package): refresh once.
	if [ -z "$deb" ] && [ -z "${NESTED_KVER:-}" ] && [ "$(id -u)" = 0 ]; then
		apt-get update -qq
		kpkg=$(resolve_kpkg)
		[ -n "$kpkg" ] && deb=$(download "$kpkg")
	fi
	[ -n "$deb" ] || die "cannot download the kernel package ${kpkg:-for linux-image-amd64} (apt-get update as root?)"
	kver=${kpkg#linux-image-}
	kroot="$cache/kroot-$kver"
	rm -rf "$kroot.tmp"
	dpkg-deb -x "$deb" "$kroot.tmp"
	rm -rf "$kroot"
	mv "$kroot.tmp" "$kroot"
	rm -f "$deb"
fi
[ -z "${NESTED_KVER:-}" ] && echo "$kpkg" > "$cache/kpkg"
ln -sfn "$kroot/boot/vmlinuz-$kver" "$cache/vmlinuz"

# 3. Initramfs.
initrd="$cache/initramfs.cpio.gz"
stamp="$kver $(cat "$here/init" "$here/setup.sh" /bin/busybox | sha256sum | cut -d' ' -f1)"
if [ -f "$initrd" ] && [ "$(cat "$initrd.stamp" 2>/dev/null)" = "$stamp" ]; then
	echo "nested/setup: up to date ($kver)"
	exit 0
fi

moddir="$kroot/lib/modules/$kver"
[ -d "$moddir" ] || die "no modules in $moddir"

# Dependencies come from each module's .modinfo (modules.dep is generated
# by depmod at install time, so the unpacked package has none).
modpath() {
	local f
	f=$(find "$moddir/kernel" \( -name "$1.ko" -o -name "$1.ko.xz" \) | head -1)
	[ -n "$f" ] || f=$(find "$moddir/kernel" \( -name "${1//_/-}.ko" -o -name "${1//-/_}.ko" \) | head -1)
	[ -n "$f" ] || die "module $1 not found in $moddir"
	echo "$f"
}
moddeps() {
	objcopy -O binary --only-section=.modinfo "$1" /dev/stdout |
		tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' '
}
order=()
declare -A seen=()
visit() {
	local f d
	[ -n "${seen[$1]:-}" ] && return 0
	seen[$1]=1
	f=$(modpath "$1")
	for d in $(moddeps "$f"); do
		visit "$d"
	done
	order+=("$f")
}
# 9p over virtio-pci for the host file systems; kvm-amd for /dev/kvm.
for m in virtio_pci 9pnet_virtio 9p kvm kvm-amd; do
	visit "$m"
done

stage="$cache/initramfs.tmp"
rm -rf "$stage"
mkdir -p "$stage"/{bin,dev,proc,sys,host,lib/modules}
cp /bin/busybox "$stage/bin/busybox"
for a in sh mount umount mkdir insmod chroot poweroff cat echo sleep \
	 dmesg stty ls grep sed tr cut test; do
	ln -s busybox "$stage/bin/$a"
done
: > "$stage/lib/modules/order"
for f in "${order[@]}"; do
	b=$(basename "$f")
	case "$b" in
	*.xz) xz -dc "$f" > "$stage/lib/modules/${b%.xz}"; b=${b%.xz} ;;
	*) cp "$f" "$stage/lib/modules/$b" ;;
	esac
	echo "$b" >> "$stage/lib/modules/order"
done
install -m 755 "$here/init" "$stage/init"
(cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) |
	gzip -1 > "$initrd.tmp"
mv "$initrd.tmp" "$initrd"
rm -rf "$stage"
echo "$stamp" > "$initrd.stamp"
echo "nested/setup: built $initrd ($kver; modules: ${order[*]##*/})"
