// SPDX-License-Identifier: MIT
/*
 * kvm.c - /dev/kvm itself: opening it, its capabilities and its CPUID.
 * What the host's KVM really does is probe.c's question.
 * Messages for an unusable /dev/kvm say what to do, because that is the
 * first thing a new user of vmpoke meets.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm_internal.h"

int kvm_open_dev(char *problem, size_t len)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int ver;

	if (fd < 0) {
		int e = errno;

		if (e == ENOENT)
			snprintf(problem, len, "/dev/kvm does not exist: load the "
				 "KVM module (modprobe kvm_intel or kvm_amd) or enable "
				 "virtualization in the firmware / nested virtualization");
		else if (e == EACCES || e == EPERM)
			snprintf(problem, len, "/dev/kvm: permission denied: add "
				 "your user to group kvm (sudo usermod -aG kvm $USER, "
				 "then log in again)");
		else
			snprintf(problem, len, "/dev/kvm: %s", strerror(e));
		return -e;
	}
	ver = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (ver != KVM_API_VERSION) {
		snprintf(problem, len, "/dev/kvm: KVM API version %d, need %d; "
			 "this kernel's KVM is not supported", ver, KVM_API_VERSION);
		close(fd);
		return -ENOTSUP;
	}
	return fd;
}

int kvm_check_ext(int fd, long cap)
{
	int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	return r < 0 ? 0 : r;
}

struct kvm_cpuid2 *kvm_supported_cpuid(int kvm_fd)
{
	for (unsigned int n = 64; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) +
					      n * sizeof(struct kvm_cpuid_entry2));

		if (!c)
			return NULL;
		c->nent = n;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			return c;
		free(c);
		if (errno != E2BIG)
			return NULL;
	}
	return NULL;
}
