/* SPDX-License-Identifier: MIT */
/*
 * stats.h - the one statistics helper for vmpoke's measurements (doctor's
 * probes, bench sync, bench poke), so every figure uses the same median.
 * Samples are nanoseconds; results are microseconds.
 */
#ifndef VMPOKE_STATS_H
#define VMPOKE_STATS_H

#include <stddef.h>
#include <stdint.h>

struct stats {
	double median_us;	/* mean of the two middle samples if n is even */
	double p99_us;		/* nearest rank: the smallest sample >= 99% of all */
};

/* Sorts v; all zero if n == 0. */
void stats_ns(uint64_t *v, size_t n, struct stats *st);
/* The median alone (sorts v). */
double stats_median_us(uint64_t *v, size_t n);

#endif /* VMPOKE_STATS_H */
