// SPDX-License-Identifier: MIT
/*
 * campaign_encode.c - the byte strings campaigns patch with: vmpoke.jmp,
 * vmpoke.call and vmpoke.nop, and the AT&T text of vm:disasm().  Pure.
 *
 * JMP and CALL are always the rel32 forms (5 bytes): a script computes a
 * site's length from the encoder, and the protocol emulates exactly these.
 * NOPs are the forms Linux's x86_nops[] uses; nop(5) is the one-instruction
 * NOP5 the trap path emulates, longer runs are several NOPs (whole
 * instructions, for patches with an `emulate` instruction).
 */
#include <capstone/capstone.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "campaign_internal.h"

int campaign_encode_rel32(uint8_t op, uint64_t from, uint64_t to, uint8_t out[5],
			  char *msg, size_t len)
{
	int64_t rel = (int64_t)(to - (from + 5));

	if (rel < INT32_MIN || rel > INT32_MAX) {
		snprintf(msg, len, "target 0x%" PRIx64 " is out of rel32 reach of 0x%" PRIx64,
			 to, from);
		return -ERANGE;
	}
	out[0] = op;
	out[1] = (uint8_t)rel;
	out[2] = (uint8_t)(rel >> 8);
	out[3] = (uint8_t)(rel >> 16);
	out[4] = (uint8_t)(rel >> 24);
	return 0;
}

/* x86_nops[] of arch/x86/kernel/alternative.c (P6 forms). */
static const uint8_t nops[9][9] = {
	{ 0 },
	{ 0x90 },
	{ 0x66, 0x90 },
	{ 0x0f, 0x1f, 0x00 },
	{ 0x0f, 0x1f, 0x40, 0x00 },
	{ 0x0f, 0x1f, 0x44, 0x00, 0x00 },
	{ 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00 },
	{ 0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00 },
	{ 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00 },
};

int campaign_encode_nop(unsigned int n, uint8_t *out, char *msg, size_t len)
{
	unsigned int done = 0;

	if (n < 1 || n > CAMPAIGN_MAX_SITE) {
		snprintf(msg, len, "length %u is out of range (1..%d)", n, CAMPAIGN_MAX_SITE);
		return -ERANGE;
	}
	while (done < n) {
		unsigned int k = n - done > 8 ? 8 : n - done;

		memcpy(out + done, nops[k], k);
		done += k;
	}
	return 0;
}

size_t campaign_disasm_one(const uint8_t *code, size_t size, uint64_t addr,
			   char *text, size_t textlen)
{
	cs_insn *insn;
	size_t n, got = 0;
	csh h;

	if (cs_open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK)
		return 0;
	cs_option(h, CS_OPT_SYNTAX, CS_OPT_SYNTAX_ATT);
	n = cs_disasm(h, code, size, addr, 1, &insn);
	if (n == 1) {
		if (insn->op_str[0])
			snprintf(text, textlen, "%s %s", insn->mnemonic, insn->op_str);
		else
			snprintf(text, textlen, "%s", insn->mnemonic);
		got = insn->size;
	}
	if (n)
		cs_free(insn, n);
	cs_close(&h);
	return got;
}
