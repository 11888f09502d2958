/* SPDX-License-Identifier: MIT */
/* livepatch.h - the guest's livepatch targets and their checks (livepatch.c). */
#ifndef GUEST_LIVEPATCH_H
#define GUEST_LIVEPATCH_H

#include <stdint.h>
#include "vmpoke_abi.h"

struct vmpoke_task;

/*
 * Each target f(t, x) and its replacements f__vN(t, x) return different
 * functions of x.  lp_sleep blocks in a loop inside itself for
 * lp_sleep_ticks ticks of its vCPU when t is the sleeper task, so a
 * livepatch of it has a real straggler.
 */
uint64_t lp_mix(struct vmpoke_task *t, uint64_t x);
uint64_t lp_hash(struct vmpoke_task *t, uint64_t x);
uint64_t lp_sleep(struct vmpoke_task *t, uint64_t x);

/* One checked call of every target (HOT, TORTURE, LIVEPATCH). */
void lp_check_all(struct vmpoke_task *t, uint64_t x);
/* The sleeper of VMPOKE_SCN_LIVEPATCH: sleep in lp_sleep, then run outside. */
void lp_sleeper_main(struct vmpoke_task *t) __attribute__((noreturn));

#endif /* GUEST_LIVEPATCH_H */
