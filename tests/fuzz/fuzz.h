/* SPDX-License-Identifier: MIT */
/*
 * fuzz.h - the entry functions of the fuzz targets (README.md, "Fuzzing").
 *
 * Each target is one function taking the fuzzer's bytes.  libFuzzer calls
 * it through libfuzzer_main.c (clang, make fuzz); the CUnit suite "fuzz
 * replay" calls the very same function on every corpus and regression file
 * in the normal gcc build, so a crash once found stays fixed.
 *
 * A target checks what the code under test promises (a translated address
 * lies in RAM, a found symbol contains the address...) and calls
 * fuzz_fail() when a promise is broken: that aborts, which both libFuzzer
 * and the CUnit run report as a crash.
 */
#ifndef VMPOKE_FUZZ_H
#define VMPOKE_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int fuzz_elf_one(const uint8_t *data, size_t size);
int fuzz_decode_one(const uint8_t *data, size_t size);
int fuzz_guest_tables_one(const uint8_t *data, size_t size);
int fuzz_campaign_one(const uint8_t *data, size_t size);

/*
 * fuzz_decode's probe half (fuzz_relocate.c): code[0..size) at addr as a
 * probed instruction, relocated to `to`; regs and mem for its emulation.
 */
struct kvm_regs;
struct poke_mem;
void fuzz_decode_probe(const uint8_t *code, size_t size, uint64_t addr, uint64_t to,
		       const struct kvm_regs *regs, const struct poke_mem *mem);

/*
 * One Capstone handle (detail on) for the checks of fuzz_relocate.c and
 * fuzz_region.c: the instruction at b decoded at `at`, or NULL; free with
 * cs_free(insn, 1).  fuzz_cs_handle() is the csh, for cs_insn_group().
 */
struct cs_insn;
struct cs_insn *fuzz_cs_decode(const uint8_t *b, size_t len, uint64_t at);
size_t fuzz_cs_handle(void);

/*
 * fuzz_decode's optimized-probe half (fuzz_region.c): code[0..size) at
 * addr as a function, a displaced region at its (sel & 7)-th instruction
 * relocated to `to`, sometimes beside a live site.
 */
void fuzz_decode_region(const uint8_t *code, size_t size, uint64_t addr, uint64_t to,
			unsigned int sel);

void fuzz_fail(const char *target, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

#define FUZZ_CHECK(target, cond, ...) do {				\
	if (!(cond))							\
		fuzz_fail(target, __VA_ARGS__);				\
} while (0)

/* Consume fixed-size little-endian fields from the front of the input. */
struct fuzz_in {
	const uint8_t *p;
	size_t left;
};

uint64_t fuzz_take(struct fuzz_in *in, size_t bytes);

/* The bytes as a file that can be opened by path (written into path). */
void fuzz_file(const char *target, const void *data, size_t size, char *path, size_t len);

#endif /* VMPOKE_FUZZ_H */
