/* SPDX-License-Identifier: MIT */
/*
 * patcher_test.h - test-only entry points into the engine.
 *
 * The emulation lab needs a site that stays live: published in the trap
 * table with an INT3 on its first byte, so that every execution goes
 * through the trap hook's emulation of the queued instruction.  The public
 * API never leaves a site in that state (poke_batch_finish() retires it),
 * so these two functions expose exactly protocol steps 2 and 6.
 */
#ifndef VMPOKE_PATCHER_TEST_H
#define VMPOKE_PATCHER_TEST_H

#include "patcher.h"

/*
 * Publish site (prepared with poke_site_prepare) and write only 0xCC at its
 * first byte, then sync.  The guest bytes after the first stay as they are.
 */
enum poke_err patcher_arm_for_test(struct patcher *p, const struct poke_site *site,
				   char *msg, size_t msglen);
/* Put site->old[0] back, sync, retire the site, sync. */
enum poke_err patcher_disarm_for_test(struct patcher *p, const struct poke_site *site,
				      char *msg, size_t msglen);

#endif /* VMPOKE_PATCHER_TEST_H */
