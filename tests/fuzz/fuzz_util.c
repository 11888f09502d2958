// SPDX-License-Identifier: MIT
/*
 * fuzz_util.c - helpers shared by the fuzz targets.  Built into both the
 * libFuzzer binaries and the CUnit replay (see fuzz.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"

void fuzz_fail(const char *target, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "\n%s: broken promise: ", target);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* Missing bytes read as zero, so every input is a valid (short) input. */
uint64_t fuzz_take(struct fuzz_in *in, size_t bytes)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < bytes && i < 8; i++) {
		if (!in->left)
			break;
		v |= (uint64_t)*in->p << (8 * i);
		in->p++;
		in->left--;
	}
	return v;
}

/*
 * vmpoke reads images and scripts by path: give it the bytes as a file,
 * a memfd (one per process, rewritten each time) seen through /proc.
 */
void fuzz_file(const char *target, const void *data, size_t size, char *path, size_t len)
{
	static int fd = -1;
	size_t done = 0;

	if (fd < 0)
		fd = memfd_create("vmpoke-fuzz", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, 0))
		fuzz_fail(target, "cannot create the memfd");
	while (done < size) {
		ssize_t n = pwrite(fd, (const char *)data + done, size - done, (off_t)done);

		if (n <= 0)
			fuzz_fail(target, "cannot write the memfd");
		done += (size_t)n;
	}
	snprintf(path, len, "/proc/self/fd/%d", fd);
}
