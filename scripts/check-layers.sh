#!/bin/sh
# SPDX-License-Identifier: MIT
#
# check-layers.sh - the include graph follows the layers of docs/design.md:
#
#   patcher/cli -> patcher -> vmm -> KVM;  guest, and all of them -> vmpoke_abi.h
#
# A file may include from its own layer or one below it, never from one
# above or beside it.  vmm/*.h are vmm's private headers; include/ holds
# the public ones: vmm.h, pagewalk.h, symtab.h and elf_load.h are vmm's
# (a new vmm header is added to layer_of below), vmpoke_abi.h is the
# guest/host contract, every other one is the engine's (patcher.h, probe.h).  The option and JSON
# libraries (getopt, json-c) belong to the command line.  tests/ may
# include anything.  Prints "file:line: A may not include B" for each
# offence and exits 1 if there was one.
#
# Run from the top of the tree (make check-layers does).

cd "$(dirname "$0")/.." || exit 2

# The layer a file (path relative to the top) belongs to.
layer_of() {
	case $1 in
	include/vmpoke_abi.h)	echo abi ;;
	include/vmm.h | include/pagewalk.h | include/symtab.h | include/elf_load.h | \
	include/guest_tables.h | include/clock.h | include/stats.h)
				echo vmm ;;
	include/*)		echo patcher ;;	# patcher.h, probe.h, ...
	vmm/*)			echo vmm-private ;;
	patcher/cli/*)		echo cli ;;
	patcher/*)		echo patcher ;;
	guest/*)		echo guest ;;
	tests/*)		echo tests ;;
	*)			echo other ;;
	esac
}

# May a file of layer $1 include a header of layer $2?
allowed() {
	case "$1:$2" in
	*:abi)						return 0 ;;
	guest:guest)					return 0 ;;
	vmm:vmm | vmm-private:vmm | vmm-private:vmm-private) return 0 ;;
	patcher:vmm | patcher:patcher)			return 0 ;;
	cli:vmm | cli:patcher | cli:cli)		return 0 ;;
	esac
	return 1
}

# Name a layer as the message does.
layer_name() {
	case $1 in
	abi)		echo "include/vmpoke_abi.h" ;;
	vmm)		echo "vmm (include/)" ;;
	vmm-private)	echo "vmm/" ;;
	patcher)	echo "patcher/" ;;
	cli)		echo "patcher/cli/" ;;
	guest)		echo "guest/" ;;
	*)		echo "$1" ;;
	esac
}

bad=0
marks=$(mktemp) || exit 2
trap 'rm -f "$marks"' EXIT
files=$(find include vmm patcher guest -name '*.[chS]' | sort)
for f in $files; do
	from=$(layer_of "$f")
	dir=$(dirname "$f")
	grep -n '^[[:space:]]*#[[:space:]]*include' "$f" | while IFS= read -r line; do
		n=${line%%:*}
		spec=$(printf '%s\n' "${line#*:}" |
		       sed -n 's/.*include[[:space:]]*\([<"][^>"]*[>"]\).*/\1/p')
		name=$(printf '%s' "$spec" | sed 's/^[<"]//; s/[>"]$//')
		case $spec in
		\<*)
			case "$from:$name" in
			vmm*:getopt.h | vmm*:json*.h | vmm*:json-c/* | \
			patcher:getopt.h | patcher:json*.h | patcher:json-c/*)
				echo "$f:$n: $(layer_name "$from") may not include <$name> (the command line's)"
				echo bad >&3 ;;
			esac
			continue ;;
		esac
		# Quoted: the including file's directory first, then -Iinclude
		# (and -Iguest for the guest), as the compiler searches.
		target=""
		for cand in "$dir/$name" "include/$name" ${from%%-*} ; do
			[ "$cand" = guest ] && cand="guest/$name"
			if [ -f "$cand" ]; then
				target=$(realpath -m --relative-to=. "$cand")
				break
			fi
		done
		if [ -z "$target" ]; then
			echo "$f:$n: cannot find \"$name\""
			echo bad >&3
			continue
		fi
		to=$(layer_of "$target")
		if ! allowed "$from" "$to"; then
			echo "$f:$n: $(layer_name "$from") may not include $target ($(layer_name "$to"))"
			echo bad >&3
		fi
	done
done 3>"$marks"
[ -s "$marks" ] && bad=1
[ $bad = 0 ] && echo "check-layers: the include graph follows the layers"
exit $bad
