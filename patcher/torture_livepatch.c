// SPDX-License-Identifier: MIT
/*
 * torture_livepatch.c - `vmpoke torture --kinds livepatch`: livepatches of
 * the guest's lp_* functions enabled and disabled one after another, each
 * transition retried every 10 ms of guest time while the tasks call the
 * functions and check every result against their own patch_state, and
 * now and then (after one retry in 32) one is reversed in the middle.
 * Before a patch of lp_sleep begins, the kind waits (bounded) until the
 * sleeper is inside lp_sleep, so every such transition has a real
 * straggler, and the next waits until it has left: with `--inject
 * no-stack-check` the sleeper is then switched inside it and the guest
 * sees it return into code that expects the new result.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "livepatch.h"
#include "symtab.h"
#include "torture.h"
#include "vmm.h"

#define LP_RETRY_MS	10
#define LP_PLANT_MS	2000	/* wait at most this for the sleeper to nap */

static const struct klp_func_spec lp_sets[][2] = {
	{ { "lp_sleep", "lp_sleep__v2" }, { NULL, NULL } },
	{ { "lp_mix", "lp_mix__v2" }, { "lp_hash", "lp_hash__v2" } },
	{ { "lp_mix", "lp_mix__v3" }, { NULL, NULL } },
};
#define LP_NR_SETS	(sizeof(lp_sets) / sizeof(lp_sets[0]))

struct torture_lp {
	struct vm *vm;
	struct klp *k;
	struct klp_patch *lp[LP_NR_SETS];
	bool naps[LP_NR_SETS];		/* replaces lp_sleep */
	uint64_t sleeper_in;		/* &lp_sleeper_in, 0 if none */
	unsigned int wait_leave;	/* rounds left to wait for the sleeper to leave */
	unsigned int reverse_at;	/* the retry count reversal was last drawn at */
	bool no_stack_check;
	bool began;			/* the first transition (lp_sleep's) began */
	struct torture_lp_stats st;
};

struct torture_lp *torture_lp_new(struct patcher *p, struct vm *vm, const char *image,
				  enum poke_inject inject)
{
	struct klp_opts o = { .retry_ms = LP_RETRY_MS,
			      .no_stack_check = inject == POKE_INJECT_NO_STACK_CHECK };
	struct torture_lp *t = calloc(1, sizeof(*t));
	const struct sym *s;
	char msg[256];

	if (!t) {
		vmm_error("torture: out of memory");
		return NULL;
	}
	t->vm = vm;
	t->no_stack_check = o.no_stack_check;
	t->k = klp_new(p, vm, image, &o, msg, sizeof(msg));
	for (size_t i = 0; t->k && i < LP_NR_SETS; i++) {
		size_t n = lp_sets[i][1].old ? 2 : 1;

		t->lp[i] = klp_patch_new(t->k, lp_sets[i], n, msg, sizeof(msg));
		if (!t->lp[i])
			break;
		t->naps[i] = !strcmp(lp_sets[i][0].old, "lp_sleep");
	}
	if (!t->k || !t->lp[LP_NR_SETS - 1]) {
		vmm_error("torture: livepatch: %s", msg);
		torture_lp_free(t);
		return NULL;
	}
	s = symtab_find(vmm_symtab(vm), "lp_sleeper_in");
	t->sleeper_in = s ? s->addr : 0;
	return t;
}

void torture_lp_free(struct torture_lp *t)
{
	if (!t)
		return;
	klp_free(t->k);
	free(t);
}

void torture_lp_stats(const struct torture_lp *t, struct torture_lp_stats *out)
{
	*out = t->st;
}

static void lp_sleep_ms(unsigned int ms)
{
	struct timespec ts = { 0, (long)ms * 1000000 };

	nanosleep(&ts, NULL);
}

/* Plant the straggler: wait until the sleeper naps inside lp_sleep. */
static void lp_plant(struct torture_lp *t)
{
	uint32_t in = 0;

	for (unsigned int i = 0; t->sleeper_in && i < LP_PLANT_MS; i++) {
		if (vmm_gva_read(t->vm, t->sleeper_in, &in, sizeof(in)) || in) {
			t->st.planted += in != 0;
			return;
		}
		lp_sleep_ms(1);
	}
}

static void lp_account(struct torture_lp *t, struct klp_patch *lp, enum klp_state before,
		       unsigned int retries_before)
{
	struct klp_info in;

	klp_patch_info(lp, &in);
	if (in.retries <= retries_before)
		return;		/* no retry this round */
	t->st.retries += in.retries - retries_before;
	for (size_t i = 0; i < in.nr_pending; i++)
		if (!strcmp(in.pending[i].reason, "sleeping on function")) {
			t->st.stragglers++;
			break;
		}
	if ((before == KLP_PATCHING || before == KLP_UNPATCHING) &&
	    (in.state == KLP_PATCHED || in.state == KLP_UNPATCHED)) {
		t->st.transitions++;
		/*
		 * Let a planted sleeper leave lp_sleep before the next
		 * transition resets every task: only then does a task switched
		 * inside it (--inject no-stack-check) show, deterministically.
		 */
		for (size_t i = 0; i < LP_NR_SETS; i++)
			if (t->lp[i] == lp && t->naps[i])
				t->wait_leave = LP_PLANT_MS;
	}
}

/* Still waiting for the sleeper to leave lp_sleep? (1 ms per round) */
static bool lp_leaving(struct torture_lp *t)
{
	uint32_t in = 0;

	if (!t->wait_leave || !t->sleeper_in ||
	    vmm_gva_read(t->vm, t->sleeper_in, &in, sizeof(in)) || !in) {
		t->wait_leave = 0;
		return false;
	}
	t->wait_leave--;
	lp_sleep_ms(1);
	return true;
}

/*
 * Reverse a transition now and then: at most once per retry (the chance is
 * per retry, not per round), and never a patch of lp_sleep under --inject
 * no-stack-check, whose reversal would switch the planted sleeper back
 * before it leaves and so hide the fault injected.
 */
static bool lp_may_reverse(struct torture_lp *t, struct klp_patch *lp, unsigned int retries)
{
	bool fresh = retries != t->reverse_at;

	t->reverse_at = retries;
	for (size_t i = 0; t->no_stack_check && i < LP_NR_SETS; i++)
		if (t->lp[i] == lp && t->naps[i])
			return false;
	return fresh;
}

int torture_lp_round(struct torture_lp *t, uint64_t *rng)
{
	struct klp_patch *lp = klp_in_transition(t->k);
	unsigned int i = (unsigned int)(torture_rand(rng) % LP_NR_SETS);
	struct klp_info in;
	unsigned int sw0;
	char msg[512];
	int err;

	if (lp) {
		klp_patch_info(lp, &in);
		sw0 = in.switched;
		if (lp_may_reverse(t, lp, in.retries) && torture_rand(rng) % 32 == 0) {
			/* klp_reverse_transition(), from outside */
			err = in.state == KLP_PATCHING ? klp_disable(lp, msg, sizeof(msg)) :
							 klp_enable(lp, msg, sizeof(msg));
			t->st.reversals += !err;
		} else {
			err = klp_tick(t->k, false, msg, sizeof(msg));
			if (!err && klp_in_transition(t->k) == lp)
				lp_sleep_ms(1);		/* not due yet: let the guest run */
		}
		lp_account(t, lp, in.state, in.retries);
		klp_patch_info(lp, &in);
		t->st.switches += in.switched >= sw0 ? in.switched - sw0 : in.switched;
	} else {
		if (lp_leaving(t))
			return 0;
		/* lp_sleep's patch first: every run has its planted straggler */
		if (!t->began)
			i = 0;
		t->began = true;
		lp = t->lp[i];
		klp_patch_info(lp, &in);
		if (in.state == KLP_UNPATCHED && t->naps[i])
			lp_plant(t);
		err = in.state == KLP_PATCHED ? klp_disable(lp, msg, sizeof(msg)) :
						klp_enable(lp, msg, sizeof(msg));
		if (err == -EBUSY || err == -EAGAIN)
			return 0;	/* its old function is another's, or a stub busy */
		lp_account(t, lp, in.state == KLP_PATCHED ? KLP_UNPATCHING : KLP_PATCHING, 0);
		klp_patch_info(lp, &in);
		t->st.switches += in.switched;
		/* the grace period of the last transition's stubs */
		if (!err)
			err = klp_tick(t->k, false, msg, sizeof(msg));
	}
	if (err) {
		vmm_error("torture: livepatch: %s", msg);
		return -1;
	}
	return 0;
}
