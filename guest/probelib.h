/* SPDX-License-Identifier: MIT */
/* probelib.h - the lib_* functions (probelib.c), CPL3 task text. */
#ifndef GUEST_PROBELIB_H
#define GUEST_PROBELIB_H

#include <stddef.h>
#include <stdint.h>

#define LIB_SUM_LEN	4	/* lib_add calls per lib_sum_calls call in user.c */
#define LIB_CSUM_LEN	16

uint64_t lib_add(uint64_t a, uint64_t b);
uint64_t lib_mul_add(uint64_t a, uint64_t b, uint64_t c);
uint32_t lib_checksum(const uint8_t *buf, size_t n);
uint64_t lib_switch(uint32_t op, uint64_t x);
uint64_t lib_sum_calls(const uint64_t *v, size_t n);

extern uint64_t lib_scale;

#endif /* GUEST_PROBELIB_H */
