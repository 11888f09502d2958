#!/bin/bash
# tests/debug-exit/run.sh [all|plain|nrips] - run the suite lists of this
# directory with the trap path forced to debug-exit (trap path (a),
# KVM_EXIT_DEBUG), one after the other; fail if any fails.
#
# `make check-debug-exit` runs it on a KVM that gives KVM_EXIT_DEBUG: the
# host's ("all"), or the nested harness's with the patched QEMU, in two
# boots: "plain" under kvm_amd with nrips=0 (the harness's CPU), then
# "nrips" with NRIPS on.  Each NN-name.sh is one suite list; one named
# NN-name.nrips.sh needs NRIPS under kvm_amd (see its comment).  Another
# list is another file.
#
# Environment (from the Makefile): VMPOKE, VMPOKE_IMAGE, VMPOKE_TESTS (the
# CUnit binary), SUITE (optional filter), VMPOKE_JUNIT (optional JUnit file
# the runs add to).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
sel=${1:-all}
export VMPOKE_TRAP_PATH=debug-exit
# A suite this KVM "cannot run" is a failure here, not a NOT RUN line: these
# runs exist to prove path (a) (testlib.c).
export VMPOKE_TESTS_MUST_RUN=1

case "$sel" in
all) files=("$here"/[0-9][0-9]-*.sh) ;;
plain) files=() ; for f in "$here"/[0-9][0-9]-*.sh; do
	[[ $f == *.nrips.sh ]] || files+=("$f"); done ;;
nrips) files=("$here"/[0-9][0-9]-*.nrips.sh) ;;
*) echo "usage: $0 [all|plain|nrips]" >&2; exit 2 ;;
esac

# What this KVM offers.  A run forced onto debug-exit where it does not
# work fails in vmm_create(), so nothing below can pass on the doorbell.
echo "=== kvm_amd nrips: $(cat /sys/module/kvm_amd/parameters/nrips 2>/dev/null || echo n/a)"
"${VMPOKE:-build/vmpoke}" doctor
rc=0
for f in "${files[@]}"; do
	echo "=== debug-exit run ${f##*/}"
	bash "$f" || { echo "*** debug-exit run ${f##*/} FAILED"; rc=1; }
done
exit $rc
