// SPDX-License-Identifier: MIT
/*
 * libfuzzer_main.c - libFuzzer's entry point for one target, chosen at
 * build time with -DFUZZ_ENTRY=fuzz_<target>_one (tests/fuzz/fuzz.mk).
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return FUZZ_ENTRY(data, size);
}
