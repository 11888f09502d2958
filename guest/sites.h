/* SPDX-License-Identifier: MIT */
/*
 * sites.h - the patchable functions of guest/sites.S and the values each
 * may legally return for input x (x < 2^24).  A result outside its set
 * means a torn or wrong patch (or a bug): the workload reports it.
 */
#ifndef GUEST_SITES_H
#define GUEST_SITES_H

#include <stdint.h>

uint64_t site_nop5_a(uint64_t x);	/* x ^ 0x1111 | jumped: x ^ 0x2222 */
uint64_t site_nop5_b(uint64_t x);	/* x + 0x33   | jumped: x + 0x44 */
uint64_t site_nop2_a(uint64_t x);	/* x ^ 0x5555 | jumped: x ^ 0x6666 */
uint64_t site_nop2_b(uint64_t x);	/* x + 0x77   | jumped: x + 0x88 */
uint64_t site_call_a(uint64_t x);	/* x + 0x100, 0x200 or 0x300 */
uint64_t site_call_b(uint64_t x);	/* x + 0x101, 0x201 or 0x301 */
uint64_t site_jcc_a(uint64_t x);	/* odd: x ^ 0xa1 | x ^ 0xa2; even: x ^ 0xa0 */
uint64_t site_jcc_b(uint64_t x);	/* bit1 clear: x + 0xb1 | x + 0xb2; set: x + 0xb0 */
uint64_t site_multi_a(uint64_t x);	/* (uint32_t)x ^ 0x5a */
uint64_t site_multi_b(uint64_t x);	/* (uint32_t)(~(x + 7) << 1) */
uint64_t site_multi_c(uint64_t x);	/* (uint32_t)x ^ 0x3c */

#define SITE_X_MASK	0xffffffull

#endif /* GUEST_SITES_H */
