// SPDX-License-Identifier: MIT
/*
 * fuzz_util.c - helpers shared by the fuzz targets.  Built into both the
 * libFuzzer binaries and the CUnit replay (see fuzz.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"

void fuzz_fail(const char *target, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "\n%s: broken promise: ", target);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* Missing bytes read as zero, so every input is a valid (short) input. */
uint64_t fuzz_take(struct fuzz_in *in, size_t bytes)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < bytes && i < 8; i++) {
		if (!in->left)
			break;
		v |= (uint64_t)*in->p << (8 * i);
		in->p++;
		in->left--;
	}
	return v;
}
