/* SPDX-License-Identifier: MIT */
/*
 * jump_label.h - static keys with the kernel's x86-64 asm-goto pattern
 * (arch/x86/include/asm/jump_label.h): each site is a NOP or a JMP to the
 * "yes" label, and a __jump_table entry {code, target, key | branch}, each
 * field relative to itself (vmpoke_abi.h).  The VMM flips the sites from
 * outside; nothing in the guest writes them.
 */
#ifndef GUEST_JUMP_LABEL_H
#define GUEST_JUMP_LABEL_H

#include "vmpoke_abi.h"

#define JL_TABLE_ENTRY						\
	".pushsection __jump_table, \"aw\"\n\t"			\
	".balign 8\n\t"						\
	".long 1b - ., %l[l_yes] - .\n\t"			\
	".quad %c0 + %c1 - .\n\t"				\
	".popsection\n\t"

#define __jl_inline	static inline __attribute__((always_inline))

/* arch_static_branch(): NOP5 now; true once the site is a JMP32. */
__jl_inline int jl_nop5(struct vmpoke_static_key *key, const int branch)
{
	__asm__ goto("1: .byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n\t" JL_TABLE_ENTRY
		     : : "i"(key), "i"(branch) : : l_yes);
	return 0;
l_yes:
	return 1;
}

/* arch_static_branch_jump() with the 5-byte JMP. */
__jl_inline int jl_jmp32(struct vmpoke_static_key *key, const int branch)
{
	__asm__ goto("1: .byte 0xe9\n\t.long %l[l_yes] - 2f\n2:\n\t" JL_TABLE_ENTRY
		     : : "i"(key), "i"(branch) : : l_yes);
	return 0;
l_yes:
	return 1;
}

/* The short forms: NOP2 (66 90) and JMP8 (EB rel8). */
__jl_inline int jl_nop2(struct vmpoke_static_key *key, const int branch)
{
	__asm__ goto("1: .byte 0x66, 0x90\n\t" JL_TABLE_ENTRY
		     : : "i"(key), "i"(branch) : : l_yes);
	return 0;
l_yes:
	return 1;
}

__jl_inline int jl_jmp8(struct vmpoke_static_key *key, const int branch)
{
	__asm__ goto("1: .byte 0xeb, %l[l_yes] - 2f\n2:\n\t" JL_TABLE_ENTRY
		     : : "i"(key), "i"(branch) : : l_yes);
	return 0;
l_yes:
	return 1;
}

/*
 * static_branch_unlikely()/likely() as the kernel builds them: the site
 * starts as NOP when it matches the key's initial state ^ branch, so each
 * of these evaluates to "the key is enabled".
 */
#define jl_unlikely_false(k)	jl_nop5((k), 0)		/* init false */
#define jl_likely_false(k)	(!jl_jmp32((k), 1))
#define jl_likely_true(k)	(!jl_nop5((k), 1))	/* init true */
#define jl_unlikely_true(k)	jl_jmp32((k), 0)

#define JL_KEY_INIT_FALSE	{ .enabled = 0, .seq = 0, .type = 0 }
#define JL_KEY_INIT_TRUE	{ .enabled = 1, .seq = 0, .type = 1 }

struct vmpoke_task;
/* Every key's sites, each checked against the key (HOT, TORTURE). */
void jl_check_all(struct vmpoke_task *t);
/* CPL0, vCPU 0 at boot: the guest corrupts jl_key_corrupt's site. */
void jl_boot_corrupt(void);

#endif /* GUEST_JUMP_LABEL_H */
