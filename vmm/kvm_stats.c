// SPDX-License-Identifier: MIT
/*
 * kvm_stats.c - one counter of KVM's binary statistics per vCPU: how often
 * the vCPU left guest mode for a host interrupt ("irq_exits").
 *
 * Why: the core sync (sync_core.c) promises that every vCPU in guest mode
 * leaves it, and the only witness outside the kernel is KVM's own count of
 * those exits.  `bench sync` and the tests read it to show the promise
 * holds on the host at hand, rather than taking the kernel's word for it.
 *
 * The stats fd (KVM_GET_STATS_FD, Linux 5.14) has a header, an array of
 * descriptors with names, and a data block.  The header comes from the
 * kernel, not the guest, but its sizes are still checked before they size
 * a read: a bad one means "no statistics", never a wild read.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm_internal.h"

#define KVM_STATS_MAX_DESC	4096u
#define KVM_STATS_MAX_NAME	1024u

/* Offset of the u64 named name in the data block, or -1. */
static long kvm_stats_find(int fd, const struct kvm_stats_header *h, const char *name)
{
	size_t dsz = sizeof(struct kvm_stats_desc) + h->name_size;
	char *descs;
	long off = -1;

	if (!h->num_desc || h->num_desc > KVM_STATS_MAX_DESC ||
	    !h->name_size || h->name_size > KVM_STATS_MAX_NAME)
		return -1;
	descs = malloc(dsz * h->num_desc);
	if (!descs)
		return -1;
	if (pread(fd, descs, dsz * h->num_desc, h->desc_offset) != (ssize_t)(dsz * h->num_desc))
		goto out;
	for (unsigned int i = 0; i < h->num_desc; i++) {
		struct kvm_stats_desc *d = (struct kvm_stats_desc *)(descs + i * dsz);

		if (strnlen(d->name, h->name_size) == h->name_size ||
		    strcmp(d->name, name) || d->size != 1)
			continue;
		off = (long)h->data_offset + (long)d->offset;
		break;
	}
out:
	free(descs);
	return off;
}

void kvm_stats_open(struct vcpu *v)
{
	struct kvm_stats_header h;
	int fd;

	v->stats_fd = -1;
	v->irq_exits_off = -1;
	if (kvm_check_ext(v->vm->vm_fd, KVM_CAP_BINARY_STATS_FD) <= 0)
		return;
	fd = ioctl(v->fd, KVM_GET_STATS_FD, NULL);
	if (fd < 0)
		return;
	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    (v->irq_exits_off = kvm_stats_find(fd, &h, "irq_exits")) < 0) {
		close(fd);
		return;
	}
	v->stats_fd = fd;
}

void kvm_stats_close(struct vcpu *v)
{
	if (v->stats_fd >= 0)
		close(v->stats_fd);
	v->stats_fd = -1;
}

bool kvm_stats_irq_exits(struct vcpu *v, uint64_t *out)
{
	return v->stats_fd >= 0 &&
	       pread(v->stats_fd, out, sizeof(*out), v->irq_exits_off) == (ssize_t)sizeof(*out);
}
