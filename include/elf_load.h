/* SPDX-License-Identifier: MIT */
/*
 * elf_load.h - load an ELF64 x86-64 executable into guest RAM with libelf.
 */
#ifndef VMPOKE_ELF_LOAD_H
#define VMPOKE_ELF_LOAD_H

#include <stddef.h>
#include <stdint.h>

struct elf_image {
	uint64_t entry;
	uint64_t lowest;	/* lowest PT_LOAD paddr */
	uint64_t highest;	/* end of the highest PT_LOAD (memsz) */
	unsigned int nr_segments;
};

/*
 * Copy every PT_LOAD segment (filesz bytes, zero the rest of memsz) to
 * ram + p_paddr.  Rejects, with a message naming path: a missing or
 * unreadable file, not ELF, ELF32, e_machine != EM_X86_64, not ET_EXEC,
 * truncated segments, a segment outside [min_gpa, ram_size), and an entry
 * point outside every executable segment.  Returns 0 or -EINVAL/-ENOENT.
 * ram may be NULL: every check, nothing copied (the CLI validates an image
 * that way before it opens /dev/kvm).
 */
int elf_load(const char *path, void *ram, uint64_t ram_size, uint64_t min_gpa,
	     struct elf_image *img, char *err, size_t errlen);

/* A section's bytes, copied out of the image; free(data) when done. */
struct elf_section {
	uint64_t addr;		/* sh_addr */
	uint64_t size;
	uint8_t *data;
};

/*
 * Read the PROGBITS section `name` of the image at path.  0, -ENOENT if it
 * has none, another negative errno with err naming the file otherwise.
 */
int elf_section_read(const char *path, const char *name, struct elf_section *out,
		     char *err, size_t errlen);

#endif /* VMPOKE_ELF_LOAD_H */
