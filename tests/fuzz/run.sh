#!/usr/bin/env bash
# tests/fuzz/run.sh BUILD SECONDS TARGET... - run each libFuzzer target for
# SECONDS, or FUZZ_RUNS executions if that is set and comes first (make fuzz).  Prints, per target, its executions, its coverage and
# whether it crashed; a crash (or leak, or UBSan report) is saved under
# BUILD/crashes/TARGET/ with the command that reproduces it.  Exits 1 if any
# target crashed, 2 on a usage or set-up error.
set -u
build=${1:?usage: run.sh BUILD SECONDS TARGET...}
secs=${2:?usage: run.sh BUILD SECONDS TARGET...}
shift 2
[ $# -gt 0 ] || { echo "run.sh: no targets" >&2; exit 2; }
src=$(cd "$(dirname "$0")" && pwd)
failed=0

for t in "$@"; do
	bin=$build/$t
	[ -x "$bin" ] || { echo "run.sh: $bin is not built" >&2; exit 2; }
	crashes=$build/crashes/$t
	work=$build/corpus/$t		# what this machine found; seeds stay read-only
	log=$build/logs/$t.log
	mkdir -p "$crashes" "$work" "$(dirname "$log")"
	dict=()
	[ -f "$src/dict/$t.dict" ] && dict=(-dict="$src/dict/$t.dict")
	runs=()
	[ -n "${FUZZ_RUNS:-}" ] && runs=(-runs="$FUZZ_RUNS")
	# Crashes once found run first, under clang's sanitizers, every time.
	regress=()
	[ -d "$src/regress/$t" ] && regress=("$src/regress/$t")
	before=$(ls "$crashes" | wc -l)
	start=$(date +%s)
	# -timeout: an input that runs 30 s is a hang, reported like a crash.
	"$bin" -max_total_time="$secs" "${runs[@]}" -timeout=30 -print_final_stats=1 \
		-artifact_prefix="$crashes/" "${dict[@]}" "$work" "$src/corpus/$t" "${regress[@]}" \
		>"$log" 2>&1
	rc=$?
	took=$(( $(date +%s) - start ))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	# A crash ends the run before the final stats: take the last status line.
	[ -n "$execs" ] || execs=$(grep -ao '^#[0-9]*' "$log" | tail -1 | tr -d '#')
	cov=$(grep -ao 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
	ft=$(grep -ao 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
	corp=$(grep -ao 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
	# slow-unit-*: libFuzzer's note of a slow input (a busy machine), not a crash.
	new=$(ls -t "$crashes" | head -n $(( $(ls "$crashes" | wc -l) - before )) |
		grep -v '^slow-unit-')
	if [ "$rc" -eq 0 ] && [ -z "$new" ]; then
		verdict="no crash"
	else
		verdict="CRASHED (exit $rc)"
		failed=1
	fi
	printf '%-18s %10s execs in %ss, cov %s edges, ft %s, corpus %s: %s\n' \
		"$t" "${execs:-?}" "$took" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$verdict"
	if [ "$verdict" != "no crash" ]; then
		grep -aE '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|.*broken promise)' "$log" | head -5 | sed 's/^/    /'
		for f in $new; do
			echo "    saved: $crashes/$f"
			echo "    reproduce: $bin $crashes/$f"
		done
		echo "    log: $log"
	fi
done
exit $failed
