#!/bin/bash
# tests/nested/selftest.sh - check run-in-kvm.sh itself: status and output
# pass through, failures are never reported as success, and the probe sees
# a working /dev/kvm.  Boots the VM three times (minutes under TCG).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# NESTED_SELFTEST_RUN: a stand-in for run-in-kvm.sh, to see this test fail.
run=${NESTED_SELFTEST_RUN:-$here/run-in-kvm.sh}
probe="$root/build/nested/kvm_probe"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
failed=0

check() {	# check NAME EXPECTED-STATUS GOT-STATUS [GREP-PATTERN]
	if [ "$3" != "$2" ]; then
		echo "selftest: FAIL: $1: exit $3, expected $2"
		failed=1
	elif [ -n "${4:-}" ] && ! grep -q -- "$4" "$out"; then
		echo "selftest: FAIL: $1: output lacks '$4':"
		sed 's/^/    /' "$out"
		failed=1
	else
		echo "selftest: ok: $1"
	fi
}

mkdir -p "$root/build/nested"
gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -o "$probe" "$here/kvm_probe.c" ||
	{ echo "selftest: FAIL: cannot build kvm_probe"; exit 1; }

# One boot: the probe, the environment, the working directory, the status.
cd "$root/tests"
NESTED_SELFTEST_VAR='a b' "$run" \
	"'$probe' 20000 && echo \"var=\$NESTED_SELFTEST_VAR cwd=\$PWD\" && exit 42" > "$out" 2>&1
st=$?
check "status passes through" 42 "$st" "var=a b cwd=$root/tests"
check "kvm_probe: IO exits then HLT" 42 "$st" "exits=20000 of 20000 in"
check "kvm_probe: SINGLESTEP exits" 42 "$st" "SINGLESTEP: KVM_EXIT_DEBUG yes"
cd "$root"

"$run" 'kill -9 $$' > "$out" 2>&1
check "killed command is a failure" 137 "$?"

NESTED_TIMEOUT=1 "$run" 'sleep 60' > "$out" 2>&1
check "timeout is a loud failure" 124 "$?" "TIMEOUT"

NESTED_CPU=qemu64,-svm "$run" 'echo SHOULD-NOT-RUN' > "$out" 2>&1
st=$?
check "no SVM: command never runs" 125 "$st" "/dev/kvm missing"
if grep -qx SHOULD-NOT-RUN "$out"; then
	echo "selftest: FAIL: the command ran without /dev/kvm"
	failed=1
fi

[ "$failed" = 0 ] && echo "selftest: all passed"
exit "$failed"
