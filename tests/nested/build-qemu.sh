#!/bin/bash
# tests/nested/build-qemu.sh - build the patched QEMU the nested harness
# needs for trap path (a), or reuse the cached build; print its path.
#
# Debian 12's QEMU 7.2 TCG never gives an L2 INT3 to L1's kvm_amd as the
# #BP intercept, so KVM_EXIT_DEBUG never happens in the nested VM (README.md
# here).  qemu-7.2-svm-int3.patch fixes that.  This script fetches Debian's
# QEMU source with apt (a private, temporary deb-src list: the system's apt
# configuration is not touched), applies the patch, builds x86_64-softmmu
# only, and keeps the binary outside the tree, keyed on the hash of the
# patch (and RECIPE below):
#     ${VMPOKE_QEMU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmpoke}/qemu-<key>/
# so a fresh clone reuses it and a changed patch rebuilds.
#
# stdout: the path of qemu-system-x86_64, and nothing else.  Progress and
# errors go to stderr; on failure the exit status is 1 and the message
# says that the patched QEMU could not be built, and why.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
patch_file="$here/qemu-7.2-svm-int3.patch"
# What building needs beyond gcc/make; the firmware (SeaBIOS, option ROMs)
# comes from qemu-system-x86's dependencies, which setup.sh installs.
BUILD_PKGS="gcc make pkg-config python3 meson ninja-build dpkg-dev xz-utils patch
	libglib2.0-dev libpixman-1-dev libfdt-dev zlib1g-dev libcap-ng-dev libattr1-dev"

fail() {
	echo "build-qemu: FAILED: cannot build the patched QEMU for trap path (a): $*" >&2
	exit 1
}

[ "${1:-}" = "--packages" ] && { echo $BUILD_PKGS; exit 0; }
[ -f "$patch_file" ] || fail "no $patch_file"

# Bump when the build below changes what it produces (configure options,
# the firmware wrapper); edits that do not, do not rebuild.
RECIPE=1
key=$( { cat "$patch_file"; echo "recipe $RECIPE"; } | sha256sum | cut -c1-16)
cache=${VMPOKE_QEMU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmpoke}
dest="$cache/qemu-$key"
bin="$dest/qemu-system-x86_64"
if [ -x "$bin" ] && [ -f "$dest/built" ]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$cache" || fail "cannot create $cache"
exec 8> "$cache/.build.lock"
flock 8
# Another build may have finished while we waited for the lock.
if [ -x "$bin" ] && [ -f "$dest/built" ]; then
	echo "$bin"
	exit 0
fi

# make deps installs these where the harness is needed (Makefile).
missing=""
for p in $BUILD_PKGS; do
	dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] || fail "missing build packages (make deps installs them):" \
	"apt-get install -y$missing"

work="$cache/build-$key.tmp"
log="$cache/build-$key.log"
rm -rf "$work"
mkdir -p "$work/apt/sources" "$work/apt/lists/partial" \
	"$work/apt/cache/archives/partial" "$work/src"

# deb-src twins of the system's deb sources, in a private apt directory.
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
	 /etc/apt/sources.list.d/*.sources; do
	[ -f "$f" ] || continue
	case "$f" in
	*.sources) sed 's/^Types:.*/Types: deb-src/' "$f" ;;
	*) sed -n 's/^deb \(.*\)/deb-src \1/p' "$f" ;;
	esac > "$work/apt/sources/$(basename "$f")"
done
apt_opts=(-o Dir::Etc::SourceList=/dev/null
	  -o "Dir::Etc::SourceParts=$work/apt/sources"
	  -o "Dir::State::Lists=$work/apt/lists"
	  -o "Dir::Cache=$work/apt/cache" -o Debug::NoLocking=1)
[ "$(id -u)" = 0 ] && apt_opts+=(-o APT::Sandbox::User=root)

echo "build-qemu: building the patched QEMU (x86_64-softmmu; a few minutes) in $work; log $log" >&2
start=$(date +%s)
# A subshell whose status is not tested, so that set -e stops at the first
# failing step (under `||` bash would ignore -e and build on).
set +e
(
	set -ex
	apt-get "${apt_opts[@]}" update
	ver=$(apt-cache "${apt_opts[@]}" showsrc qemu 2>/dev/null |
	      sed -n 's/^Version: //p' | sort -V | tail -1)
	case "$ver" in
	1:7.2+*) ;;
	*) echo "source package qemu is version '$ver', not Debian 12's 7.2"; exit 1 ;;
	esac
	cd "$work/src"
	apt-get "${apt_opts[@]}" source --download-only "qemu=$ver"
	dpkg-source -x --no-check qemu_*.dsc qemu
	cd qemu
	patch -p1 --forward --fuzz=0 < "$patch_file"
	mkdir build
	cd build
	# Only what the harness uses: TCG, virtio-9p (the host tree), the
	# PC machine.  Firmware is Debian's (qemu-system-data, seabios).
	../configure --target-list=x86_64-softmmu --without-default-features \
		--enable-tcg --enable-virtfs --enable-attr --enable-cap-ng \
		--disable-werror --disable-docs --disable-tools \
		--disable-install-blobs --meson=meson
	ninja -j"$(nproc)" qemu-system-x86_64
	./qemu-system-x86_64 --version
	mkdir -p "$dest.tmp/bin"
	cp qemu-system-x86_64 "$dest.tmp/bin/"
	# Debian's firmware, wherever this binary lives (the source package
	# ships none: dfsg).
	cat > "$dest.tmp/qemu-system-x86_64" <<-EOW
	#!/bin/sh
	# The patched QEMU (tests/nested/build-qemu.sh) with Debian's firmware.
	exec "$dest/bin/qemu-system-x86_64" -L /usr/share/seabios -L /usr/share/qemu \\
		-L /usr/lib/ipxe/qemu "\$@"
	EOW
	chmod +x "$dest.tmp/qemu-system-x86_64"
	echo "qemu $ver + $(basename "$patch_file") (key $key)" > "$dest.tmp/built"
) > "$log" 2>&1
rc=$?
set -e
if [ "$rc" != 0 ]; then
	tail -n 30 "$log" >&2
	rm -rf "$dest.tmp" "$work"
	fail "the build failed (full log: $log)"
fi
rm -rf "$dest"
mv "$dest.tmp" "$dest"
rm -rf "$work"
echo "build-qemu: built $(cat "$dest/built") in $(( $(date +%s) - start ))s: $bin" >&2
echo "$bin"
