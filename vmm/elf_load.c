// SPDX-License-Identifier: MIT
/*
 * elf_load.c - load an ELF64 x86-64 executable into guest RAM (libelf).
 *
 * The image is user input: every header field that becomes an offset or a
 * length is checked, with overflow-safe arithmetic, before any byte is
 * copied.  All checks run before the first copy, so a rejected image never
 * leaves half a kernel in RAM.  ram may be NULL to validate only (the CLI
 * does that before it opens /dev/kvm).
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elf_load.h"

static int elf_fail(char *err, size_t errlen, int ret, const char *path,
		     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int elf_fail(char *err, size_t errlen, int ret, const char *path,
		     const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (err && errlen)
		snprintf(err, errlen, "%s: %s", path, what);
	return ret;
}

/* Header checks: identity, class, machine, type. */
static int elf_check_header(Elf *e, const char *path, GElf_Ehdr *eh,
			    char *err, size_t errlen)
{
	const char *ident;
	size_t n;

	if (elf_kind(e) != ELF_K_ELF)
		return elf_fail(err, errlen, -EINVAL, path, "not an ELF file");
	ident = elf_getident(e, &n);
	if (!ident || n < EI_NIDENT)
		return elf_fail(err, errlen, -EINVAL, path, "truncated ELF header");
	if (ident[EI_CLASS] != ELFCLASS64)
		return elf_fail(err, errlen, -EINVAL, path,
				 "ELF class %d is not ELF64 (a 32-bit image cannot be a vmpoke guest)",
				 ident[EI_CLASS]);
	if (ident[EI_DATA] != ELFDATA2LSB)
		return elf_fail(err, errlen, -EINVAL, path, "not little-endian");
	if (!gelf_getehdr(e, eh))
		return elf_fail(err, errlen, -EINVAL, path, "truncated or bad ELF header: %s",
				 elf_errmsg(-1));
	if (eh->e_machine != EM_X86_64)
		return elf_fail(err, errlen, -EINVAL, path,
				 "e_machine is %u, not x86-64 (%u)", eh->e_machine, EM_X86_64);
	if (eh->e_type != ET_EXEC)
		return elf_fail(err, errlen, -EINVAL, path,
				 "e_type is %u, not an executable (ET_EXEC); link with -static -no-pie",
				 eh->e_type);
	return 0;
}

/* One PT_LOAD: inside the file, inside [min_gpa, ram_size). */
static int elf_check_segment(const GElf_Phdr *ph, size_t i, size_t file_size,
			     uint64_t ram_size, uint64_t min_gpa, const char *path,
			     char *err, size_t errlen)
{
	uint64_t fend, mend;

	if (ph->p_filesz > ph->p_memsz)
		return elf_fail(err, errlen, -EINVAL, path,
				 "segment %zu: p_filesz 0x%llx > p_memsz 0x%llx", i,
				 (unsigned long long)ph->p_filesz,
				 (unsigned long long)ph->p_memsz);
	if (__builtin_add_overflow(ph->p_offset, ph->p_filesz, &fend) || fend > file_size)
		return elf_fail(err, errlen, -EINVAL, path,
				 "truncated: segment %zu needs file bytes [0x%llx, +0x%llx) but the file has 0x%zx",
				 i, (unsigned long long)ph->p_offset,
				 (unsigned long long)ph->p_filesz, file_size);
	if (ph->p_paddr < min_gpa ||
	    __builtin_add_overflow(ph->p_paddr, ph->p_memsz, &mend) || mend > ram_size)
		return elf_fail(err, errlen, -EINVAL, path,
				 "segment %zu at [0x%llx, +0x%llx) is outside guest RAM [0x%llx, 0x%llx); "
				 "use a larger --mem or relink the image",
				 i, (unsigned long long)ph->p_paddr,
				 (unsigned long long)ph->p_memsz,
				 (unsigned long long)min_gpa, (unsigned long long)ram_size);
	return 0;
}

static int elf_check_and_load(Elf *e, const char *path, void *ram, uint64_t ram_size,
			      uint64_t min_gpa, struct elf_image *img,
			      char *err, size_t errlen)
{
	GElf_Ehdr eh;
	size_t phnum, file_size, i;
	char *raw;
	int ret, entry_ok = 0;

	ret = elf_check_header(e, path, &eh, err, errlen);
	if (ret)
		return ret;
	raw = elf_rawfile(e, &file_size);
	if (!raw)
		return elf_fail(err, errlen, -EINVAL, path, "cannot read: %s", elf_errmsg(-1));
	if (elf_getphdrnum(e, &phnum))
		return elf_fail(err, errlen, -EINVAL, path, "bad program headers: %s",
				 elf_errmsg(-1));
	memset(img, 0, sizeof(*img));
	img->entry = eh.e_entry;
	img->lowest = UINT64_MAX;

	for (int pass = 0; pass < 2; pass++) {
		for (i = 0; i < phnum; i++) {
			GElf_Phdr ph;

			if (!gelf_getphdr(e, (int)i, &ph))
				return elf_fail(err, errlen, -EINVAL, path,
						 "truncated: program header %zu: %s", i,
						 elf_errmsg(-1));
			if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
				continue;
			if (pass == 0) {
				ret = elf_check_segment(&ph, i, file_size, ram_size, min_gpa,
							path, err, errlen);
				if (ret)
					return ret;
				if ((ph.p_flags & PF_X) && eh.e_entry >= ph.p_vaddr &&
				    eh.e_entry - ph.p_vaddr < ph.p_memsz)
					entry_ok = 1;
				img->nr_segments++;
				if (ph.p_paddr < img->lowest)
					img->lowest = ph.p_paddr;
				if (ph.p_paddr + ph.p_memsz > img->highest)
					img->highest = ph.p_paddr + ph.p_memsz;
				continue;
			}
			if (!ram)
				continue;
			memcpy((char *)ram + ph.p_paddr, raw + ph.p_offset, ph.p_filesz);
			/* bss: the guest relies on zeroed statics. */
			memset((char *)ram + ph.p_paddr + ph.p_filesz, 0,
			       ph.p_memsz - ph.p_filesz);
		}
		if (pass == 0 && !img->nr_segments)
			return elf_fail(err, errlen, -EINVAL, path, "no loadable segments");
		if (pass == 0 && !entry_ok)
			return elf_fail(err, errlen, -EINVAL, path,
					 "entry point 0x%llx is outside every executable segment",
					 (unsigned long long)eh.e_entry);
	}
	return 0;
}

int elf_load(const char *path, void *ram, uint64_t ram_size, uint64_t min_gpa,
	     struct elf_image *img, char *err, size_t errlen)
{
	struct elf_image tmp;
	Elf *e;
	int fd, ret;

	if (!img)
		img = &tmp;
	if (elf_version(EV_CURRENT) == EV_NONE)
		return elf_fail(err, errlen, -EINVAL, path, "libelf: %s", elf_errmsg(-1));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return elf_fail(err, errlen, -ENOENT, path, "cannot open: %s", strerror(errno));
	e = elf_begin(fd, ELF_C_READ, NULL);
	if (!e) {
		ret = elf_fail(err, errlen, -EINVAL, path, "not an ELF file (%s)",
				elf_errmsg(-1));
	} else {
		ret = elf_check_and_load(e, path, ram, ram_size, min_gpa, img, err, errlen);
		elf_end(e);
	}
	close(fd);
	return ret;
}

/*
 * Copy a PROGBITS section out of the image (__jump_table, ...).  Its bytes
 * are the caller's to validate entry by entry; here only the section
 * header is checked against the file.
 */
static int elf_section_find(Elf *e, const char *path, const char *name,
			    struct elf_section *out, char *err, size_t errlen)
{
	size_t shstrndx, fsize;
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	Elf_Data *d;
	const char *n;

	if (elf_kind(e) != ELF_K_ELF || elf_getshdrstrndx(e, &shstrndx))
		return elf_fail(err, errlen, -EINVAL, path, "not an ELF file with "
				 "section names (%s)", elf_errmsg(-1));
	if (!elf_rawfile(e, &fsize))
		return elf_fail(err, errlen, -EINVAL, path, "cannot read the file");
	while ((scn = elf_nextscn(e, scn))) {
		if (!gelf_getshdr(scn, &sh))
			continue;
		n = elf_strptr(e, shstrndx, sh.sh_name);
		if (!n || strcmp(n, name))
			continue;
		if (sh.sh_type != SHT_PROGBITS || sh.sh_offset > fsize ||
		    sh.sh_size > fsize - sh.sh_offset)
			return elf_fail(err, errlen, -EINVAL, path, "section %s: not "
					 "PROGBITS inside the file", name);
		d = elf_getdata(scn, NULL);
		if (!d || d->d_size != sh.sh_size)
			return elf_fail(err, errlen, -EINVAL, path, "section %s: "
					 "cannot read its data", name);
		out->addr = sh.sh_addr;
		out->size = sh.sh_size;
		out->data = malloc(sh.sh_size ? sh.sh_size : 1);
		if (!out->data)
			return elf_fail(err, errlen, -ENOMEM, path, "out of memory");
		if (sh.sh_size)		/* an empty section has no d_buf */
			memcpy(out->data, d->d_buf, sh.sh_size);
		return 0;
	}
	return elf_fail(err, errlen, -ENOENT, path, "no section %s", name);
}

int elf_section_read(const char *path, const char *name, struct elf_section *out,
		     char *err, size_t errlen)
{
	Elf *e;
	int fd, ret;

	memset(out, 0, sizeof(*out));
	if (elf_version(EV_CURRENT) == EV_NONE)
		return elf_fail(err, errlen, -EINVAL, path, "libelf: %s", elf_errmsg(-1));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return elf_fail(err, errlen, -ENOENT, path, "cannot open: %s", strerror(errno));
	e = elf_begin(fd, ELF_C_READ, NULL);
	if (!e) {
		ret = elf_fail(err, errlen, -EINVAL, path, "not an ELF file (%s)",
				elf_errmsg(-1));
	} else {
		ret = elf_section_find(e, path, name, out, err, errlen);
		elf_end(e);
	}
	close(fd);
	return ret;
}
