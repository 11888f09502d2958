/* SPDX-License-Identifier: MIT */
/* static_call.h - the guest's static call sc_op (static_call.c). */
#ifndef GUEST_STATIC_CALL_H
#define GUEST_STATIC_CALL_H

#include <stdint.h>
#include "vmpoke_abi.h"

struct vmpoke_task;

extern struct vmpoke_static_call_key __SCK__sc_op;
void sc_op_add(uint64_t x, uint64_t *out);
void sc_op_mul(uint64_t x, uint64_t *out);
void sc_op_xor(uint64_t x, uint64_t *out);
void sc_call_a(uint64_t x, uint64_t *out);
void sc_call_b(uint64_t x, uint64_t *out);
void sc_call_tail(uint64_t x, uint64_t *out);
/* Every site of sc_op, each checked against the key (HOT, TORTURE). */
void sc_check_all(struct vmpoke_task *t, uint64_t x);

#endif /* GUEST_STATIC_CALL_H */
