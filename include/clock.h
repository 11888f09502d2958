/* SPDX-License-Identifier: MIT */
/*
 * clock.h - the one monotonic clock and deadline helper.  Every timeout
 * and every measurement in vmpoke is on CLOCK_MONOTONIC (a wall-clock
 * step never stretches a wait or a figure), and every condvar that is
 * waited on with a deadline is created for that clock.
 */
#ifndef VMPOKE_CLOCK_H
#define VMPOKE_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t clock_now_ns(void);

/* The absolute CLOCK_MONOTONIC time ns from now, for pthread_cond_timedwait. */
void clock_deadline(struct timespec *ts, uint64_t ns);

/* A condvar whose timed waits take clock_deadline() times. */
void clock_cond_init(pthread_cond_t *c);

#define CLOCK_NS_PER_MS	1000000ull
#define CLOCK_NS_PER_US	1000ull

#endif /* VMPOKE_CLOCK_H */
