// SPDX-License-Identifier: MIT
/*
 * jump_label.c - the guest's static keys and their sites (CPL3 task text,
 * except jl_boot_corrupt()).  Every iteration of the HOT and TORTURE tasks
 * runs every site and checks it against its key, seqlock-style: a check
 * that races with the VMM's flip (seq odd, or moved) accepts either way,
 * any other check only the way key->enabled names.
 *
 * Keys, by symbol name (what `vm:static_keys()` lists):
 *   jl_key_false    init false: NOP5, JMP32, NOP2, JMP8 sites
 *   jl_key_true     init true:  the same four forms
 *   jl_key_one      one NOP5 site
 *   jl_key_16       16 NOP5 sites in one function
 *   jl_key_256      256 NOP5 sites in one function
 *   jl_key_corrupt  one NOP5 site that vCPU 0 overwrites at boot with
 *                   other bytes (0f 1f 40 00 90, still two NOPs), so a
 *                   flip must refuse it with "unexpected op"
 */
#include "guest.h"
#include "user.h"
#include "jump_label.h"

struct vmpoke_static_key jl_key_false = JL_KEY_INIT_FALSE;
struct vmpoke_static_key jl_key_true = JL_KEY_INIT_TRUE;
struct vmpoke_static_key jl_key_one = JL_KEY_INIT_FALSE;
struct vmpoke_static_key jl_key_16 = JL_KEY_INIT_FALSE;
struct vmpoke_static_key jl_key_256 = JL_KEY_INIT_FALSE;
struct vmpoke_static_key jl_key_corrupt = JL_KEY_INIT_FALSE;

#define __jl_site	__attribute__((noinline))

/* Each returns how many of its sites said "enabled". */
__jl_site unsigned int jl_false_nop5(void) { return jl_unlikely_false(&jl_key_false); }
__jl_site unsigned int jl_false_jmp32(void) { return jl_likely_false(&jl_key_false); }
__jl_site unsigned int jl_false_nop2(void) { return jl_nop2(&jl_key_false, 0); }
__jl_site unsigned int jl_false_jmp8(void) { return !jl_jmp8(&jl_key_false, 1); }
__jl_site unsigned int jl_true_nop5(void) { return jl_likely_true(&jl_key_true); }
__jl_site unsigned int jl_true_jmp32(void) { return jl_unlikely_true(&jl_key_true); }
__jl_site unsigned int jl_true_nop2(void) { return !jl_nop2(&jl_key_true, 1); }
__jl_site unsigned int jl_true_jmp8(void) { return jl_jmp8(&jl_key_true, 0); }
__jl_site unsigned int jl_one_site(void) { return jl_unlikely_false(&jl_key_one); }

#define JL_S(k)		n += jl_unlikely_false(&(k));
#define JL_S4(k)	JL_S(k) JL_S(k) JL_S(k) JL_S(k)
#define JL_S16(k)	JL_S4(k) JL_S4(k) JL_S4(k) JL_S4(k)
#define JL_S64(k)	JL_S16(k) JL_S16(k) JL_S16(k) JL_S16(k)

__jl_site unsigned int jl_16_sites(void)
{
	unsigned int n = 0;

	JL_S16(jl_key_16)
	return n;
}

__jl_site unsigned int jl_256_sites(void)
{
	unsigned int n = 0;

	JL_S64(jl_key_256) JL_S64(jl_key_256) JL_S64(jl_key_256) JL_S64(jl_key_256)
	return n;
}

/* By hand, so boot can find the site by its label; nothing runs it. */
__asm__(".pushsection .text.jl_corrupt, \"ax\"\n"
	".globl jl_corrupt_fn\n"
	".type jl_corrupt_fn, @function\n"
	"jl_corrupt_fn:\n"
	"jl_corrupt_site: .byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n"
	"	xorl %eax, %eax\n"
	"	ret\n"
	"1:	movl $1, %eax\n"
	"	ret\n"
	".size jl_corrupt_fn, . - jl_corrupt_fn\n"
	".pushsection __jump_table, \"aw\"\n"
	".balign 8\n"
	".long jl_corrupt_site - ., 1b - .\n"
	".quad jl_key_corrupt - .\n"
	".popsection\n"
	".popsection\n");
extern uint8_t jl_corrupt_site[];

__kernel_text void jl_boot_corrupt(void)
{
	static const uint8_t junk[5] = { 0x0f, 0x1f, 0x40, 0x00, 0x90 };
	volatile uint8_t *site = jl_corrupt_site;

	for (unsigned int i = 0; i < sizeof(junk); i++)
		site[i] = junk[i];
}

typedef unsigned int (*jl_site_fn)(void);

static void jl_check(struct vmpoke_task *t, struct vmpoke_static_key *k,
		     jl_site_fn fn, unsigned int nsites, const char *what)
{
	uint32_t s0, s1;
	unsigned int r, want;
	int en;

	s0 = __atomic_load_n(&k->seq, __ATOMIC_ACQUIRE);
	en = __atomic_load_n(&k->enabled, __ATOMIC_ACQUIRE) > 0;
	r = fn();
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	s1 = __atomic_load_n(&k->seq, __ATOMIC_ACQUIRE);
	want = en ? nsites : 0;
	/* raced with a flip: any mix of the two ways, nothing else */
	if ((s0 & 1) || s0 != s1) {
		if (r > nsites)
			user_check_fail(t, (uintptr_t)fn, nsites, r, what);
		return;
	}
	if (r != want)
		user_check_fail(t, (uintptr_t)fn, want, r, what);
}

void jl_check_all(struct vmpoke_task *t)
{
	jl_check(t, &jl_key_false, jl_false_nop5, 1, "jl_false_nop5");
	jl_check(t, &jl_key_false, jl_false_jmp32, 1, "jl_false_jmp32");
	jl_check(t, &jl_key_false, jl_false_nop2, 1, "jl_false_nop2");
	jl_check(t, &jl_key_false, jl_false_jmp8, 1, "jl_false_jmp8");
	jl_check(t, &jl_key_true, jl_true_nop5, 1, "jl_true_nop5");
	jl_check(t, &jl_key_true, jl_true_jmp32, 1, "jl_true_jmp32");
	jl_check(t, &jl_key_true, jl_true_nop2, 1, "jl_true_nop2");
	jl_check(t, &jl_key_true, jl_true_jmp8, 1, "jl_true_jmp8");
	jl_check(t, &jl_key_one, jl_one_site, 1, "jl_one_site");
	jl_check(t, &jl_key_16, jl_16_sites, 16, "jl_16_sites");
	jl_check(t, &jl_key_256, jl_256_sites, 256, "jl_256_sites");
}
