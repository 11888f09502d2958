#!/bin/bash
# tests/nested/run-in-kvm.sh '<shell command>'
#
# Runs the command inside a QEMU (TCG) VM whose CPU has AMD SVM, so the
# guest's kvm_amd provides a real /dev/kvm.  The host's / is visible
# read-only and this repository read-write at the same path; the command
# runs with bash in the current directory and the caller's exported
# environment, and its exit status becomes ours.
#
# Environment:
#   NESTED_TIMEOUT  seconds before QEMU is killed (default 3000)
#   NESTED_STALL    kill QEMU when the command's output has not grown for
#                   this many seconds (default 0 = never): the nested
#                   kernel can wedge under emulated SVM; exit 124 then
#   NESTED_MEM      guest RAM in MiB (default 2048)
#   NESTED_SMP      guest vCPUs (default 2)
#   NESTED_NICE     nice level of QEMU (default 10: leave room for builds)
#   NESTED_QEMU_ARGS  more QEMU arguments (word-split)
#   NESTED_CPU      QEMU -cpu model (default qemu64,+svm,+npt; TCG has no nrip-save)
#   NESTED_QEMU     the qemu-system-x86_64 to run (default: Debian's, on PATH);
#                   build-qemu.sh prints the patched one that gives
#                   KVM_EXIT_DEBUG for trap path (a)
#   NESTED_TCG_THREAD  single (default) or multi: multi-threaded TCG corrupts
#                   nested (L2) state under cross-modifying code and wedges
#                   the L1 kernel (README.md, "Single-threaded TCG")
#
# Exit status: the command's, or 124 on timeout, 125 when the command
# never ran (boot failure, no /dev/kvm, missing setup).
set -uo pipefail

# Everything is inside main(), which bash parses completely before running
# it: editing or replacing this file while runs are in flight (they last
# minutes) must not change what those runs execute.
die() { echo "run-in-kvm: FAILED: $*" >&2; exit 125; }
cleanup() { rm -rf "$rundir"; }

main() {
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	root=$(cd "$here/../.." && pwd)
	cache="$root/build/nested"
	timeout_s=${NESTED_TIMEOUT:-3000}

	[ $# -eq 1 ] || die "usage: $0 '<shell command>'"
	case "$timeout_s" in ''|*[!0-9]*) die "NESTED_TIMEOUT=$timeout_s is not a number of seconds" ;; esac
	case "$root$PWD" in *[[:space:]]*) die "paths with whitespace are not supported: $root, $PWD" ;; esac

	# Setup is idempotent and quick when done; as non-root it only checks.
	"$here/setup.sh" >/dev/null || die "tests/nested/setup.sh failed"
	[ -f "$cache/vmlinuz" ] && [ -f "$cache/initramfs.cpio.gz" ] ||
		die "no kernel/initramfs in $cache; run tests/nested/setup.sh as root"

	rundir=$(mktemp -d "$cache/run.XXXXXX") || die "mktemp in $cache"
	trap cleanup EXIT

	printf '%s\n' "$1" > "$rundir/cmd"
	echo "$root" > "$rundir/repo"
	echo "$PWD" > "$rundir/cwd"
	nonce=$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
	echo "$nonce" > "$rundir/nonce"
	# The caller's environment, minus what describes this shell or host-only
	# resources (make's jobserver fds, temp dirs that are read-only inside).
	for v in $(compgen -e); do
		case "$v" in
		PWD|OLDPWD|SHLVL|_|TMPDIR|MAKEFLAGS|MFLAGS|MAKELEVEL|MAKEOVERRIDES|BASH_*) ;;
		*) declare -p "$v" ;;
		esac
	done > "$rundir/env" 2>/dev/null
	case "$PWD/" in
	"$root"/*) ;;
	*) echo "run-in-kvm: note: $PWD is outside $root, read-only inside" >&2 ;;
	esac

	cpu=${NESTED_CPU:-qemu64,+svm,+npt}
	qemu=${NESTED_QEMU:-qemu-system-x86_64}
	command -v "$qemu" >/dev/null || die "NESTED_QEMU=$qemu: not an executable"
	start=$(date +%s.%N)
	# The command's output goes to a file in the run directory (9p: exact
	# bytes, far faster than the emulated UART); tail streams it while QEMU
	# runs.  The console (firmware, kernel, init) is kept for failures.
	: > "$rundir/output"
	# No network device; the host tree arrives over virtio-9p.  multidevs=remap
	# keeps inode numbers unique across the host's mounts.  no_timer_check:
	# on a loaded host the emulated timer can miss the kernel's IO-APIC
	# check, which then panics at boot ("IO-APIC + timer doesn't work").
	nice -n "${NESTED_NICE:-10}" timeout -k 5 "$timeout_s" \
		"$qemu" \
		-accel "tcg,thread=${NESTED_TCG_THREAD:-single}" -cpu "$cpu" \
		-smp "${NESTED_SMP:-2}" -m "${NESTED_MEM:-2048}" \
		-nographic -no-reboot -nic none \
		-kernel "$cache/vmlinuz" -initrd "$cache/initramfs.cpio.gz" \
		-append "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off tsc=reliable no_timer_check" \
		-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
		-virtfs "local,path=$root,mount_tag=repo,security_model=none,multidevs=remap" \
		-virtfs "local,path=$rundir,mount_tag=run,security_model=none" \
		${NESTED_QEMU_ARGS:-} \
		< /dev/null > "$rundir/console" 2>&1 &
	qpid=$!
	# A background job ignores SIGINT, so pass interruptions on by hand.
	trap 'kill -TERM "$qpid" 2>/dev/null; echo "run-in-kvm: interrupted" >&2; exit 130' INT TERM
	stall_s=${NESTED_STALL:-0}
	case "$stall_s" in ''|*[!0-9]*) stall_s=0 ;; esac
	wpid=
	if [ "$stall_s" -gt 0 ]; then
		# Output (per test progress) is the heartbeat.  No growth for
		# stall_s seconds means the emulated machine has wedged (seen:
		# L1 soft lockups under QEMU 7.2's SVM); waiting out
		# NESTED_TIMEOUT would only waste CI time.
		(
			last=-1 still=0
			while kill -0 "$qpid" 2>/dev/null; do
				sleep 10
				n=$(stat -c %s "$rundir/output" 2>/dev/null || echo 0)
				if [ "$n" = "$last" ]; then still=$((still + 10)); else still=0 last=$n; fi
				if [ "$still" -ge "$stall_s" ]; then
					: > "$rundir/stalled"
					kill -TERM "$qpid" 2>/dev/null
					break
				fi
			done
		) &
		wpid=$!
	fi
	tail -n +1 -f --pid="$qpid" "$rundir/output"
	wait "$qpid"
	qrc=$?
	[ -n "$wpid" ] && kill "$wpid" 2>/dev/null
	secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

	rc=$(cat "$rundir/status" 2>/dev/null)
	case "$rc" in
	[0-9]|[0-9][0-9]|[0-9][0-9][0-9])
		grep -q "NESTED-EXIT-STATUS $nonce $rc" "$rundir/console" ||
			echo "run-in-kvm: warning: console marker missing or different" >&2
		echo "run-in-kvm: command exited with $rc after ${secs}s: guest uptime" \
			"$(cat "$rundir/ready")s when /dev/kvm was ready," \
			"$(cat "$rundir/done")s when the command ended" >&2
		exit "$rc"
		;;
	esac
	echo "run-in-kvm: ---- VM console ----" >&2
	tr -d '\r' < "$rundir/console" | tail -n 60 >&2
	echo "run-in-kvm: --------------------" >&2
	if [ -f "$rundir/stalled" ]; then
		echo "run-in-kvm: FAILED: STALLED: no output for $stall_s s; QEMU killed (NESTED_STALL)" >&2
		exit 124
	fi
	if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
		echo "run-in-kvm: FAILED: TIMEOUT: QEMU killed after $timeout_s s (NESTED_TIMEOUT)" >&2
		exit 124
	fi
	[ -f "$rundir/fatal" ] && echo "run-in-kvm: guest said: $(cat "$rundir/fatal")" >&2
	[ -f "$rundir/ready" ] &&
		die "the command started but never finished (QEMU exit $qrc after ${secs}s)"
	die "the command did not run (QEMU exit $qrc after ${secs}s)"
}

main "$@"; exit $?
