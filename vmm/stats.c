// SPDX-License-Identifier: MIT
/*
 * stats.c - median and 99th percentile of nanosecond samples.  See stats.h.
 */
#include <stdlib.h>

#include "stats.h"

static int stats_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void stats_ns(uint64_t *v, size_t n, struct stats *st)
{
	size_t p99;

	st->median_us = st->p99_us = 0;
	if (!n)
		return;
	qsort(v, n, sizeof(*v), stats_cmp_u64);
	st->median_us = (n & 1) ? v[n / 2] / 1e3 : (v[n / 2 - 1] + v[n / 2]) / 2e3;
	p99 = (n * 99 + 99) / 100;
	st->p99_us = v[p99 - 1] / 1e3;
}

double stats_median_us(uint64_t *v, size_t n)
{
	struct stats st;

	stats_ns(v, n, &st);
	return st.median_us;
}
