/* The element diff (agent/nft-elements.h), without a kernel: a model set
 * holds the elements of the old plan, takes the diff's deletions (each
 * must be there) and additions (none may be), and must end up holding
 * exactly the elements of the new plan, which must mean the new members.
 * Randomised over hash and interval sets of both families, with ranges
 * touching, reaching the top of the address space, and sets going from
 * empty to the whole space and back. The seed is printed on failure;
 * BH_TEST_SEED=N repeats a run. */
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "nft-addr.h"
#include "nft-elements.h"
#include "test.h"

typedef unsigned __int128 u128;

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64*: reproducible from the seed, which is all a test needs. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static u128 top_of(int family)
{
	return family == AF_INET ? (u128)UINT32_MAX : ~(u128)0;
}

static struct bh_addr addr_of(int family, u128 v)
{
	struct bh_addr a = {.family = (uint8_t)family};
	unsigned len = nft_addr_len(family);

	for (unsigned i = len; i-- > 0; v >>= 8)
		a.bytes[i] = (uint8_t)v;
	return a;
}

static u128 value_of(const uint8_t *bytes, unsigned len)
{
	u128 v = 0;

	for (unsigned i = 0; i < len; i++)
		v = v << 8 | bytes[i];
	return v;
}

static void add_range(struct range_list *l, int family, u128 lo, u128 hi)
{
	struct addr_range r = {.lo = addr_of(family, lo), .hi = addr_of(family, hi)};

	if (range_list_add(l, &r) < 0)
		abort();
}

/* Somewhere addresses collide often: near 0, near the top, or in one of a
 * few places in between; for interval sets also across the middle, where
 * an IPv6 range crosses from one 64-bit half to the next (a hash set
 * there would be planned as an interval set). */
static u128 anchor(int family, bool interval)
{
	u128 top = top_of(family);

	switch (below(4)) {
	case 0:
		return below(48);
	case 1:
		return top - below(48);
	case 2:
		return (top / 3) + below(64);
	default:
		return (top / 2) + (interval ? below(200) : 1 + below(200));
	}
}

/* A random member list: an interval set's normalized ranges, or a hash
 * set's sorted short ranges (which may overlap). */
static void random_list(struct range_list *l, int family, bool interval)
{
	u128 top = top_of(family);
	size_t n = below(7);

	range_list_init(l, NULL);
	if (interval && below(12) == 0) {
		add_range(l, family, 0, top); /* the whole space */
		return;
	}
	for (size_t i = 0; i < n; i++) {
		u128 lo = anchor(family, interval),
		     span = interval ? below(below(8) == 0 ? 200 : 20) : below(4);
		u128 hi = top - lo >= span ? lo + span : top;

		add_range(l, family, lo, hi);
	}
	if (interval)
		range_list_normalize(l);
	else
		range_list_sort_unique(l);
}

/* new from old: ranges dropped, grown (often until they touch the next),
 * shrunk, moved to touch another, new ones, one taken to the top. */
static void mutate(const struct range_list *old, struct range_list *l, int family, bool interval)
{
	u128 top = top_of(family);
	unsigned len = nft_addr_len(family);

	range_list_init(l, NULL);
	if (interval && below(15) == 0)
		return; /* all gone */
	if (interval && below(15) == 0) {
		add_range(l, family, 0, top);
		return;
	}
	for (size_t i = 0; i < old->n; i++) {
		u128 lo = value_of(old->v[i].lo.bytes, len), hi = value_of(old->v[i].hi.bytes, len);

		switch (below(interval ? 8 : 4)) {
		case 0:
			continue; /* dropped */
		case 1:
			if (interval && hi < top) /* a range right after it: merged by normalize */
				add_range(l, family, hi + 1,
					  hi + 1 + below(5) > hi ? hi + 1 + below(5) : top);
			break;
		case 2:
			if (interval && hi < top) /* grown */
				hi += hi + 3 <= top && hi + 3 > hi ? 1 + below(3) : 0;
			break;
		case 3:
			if (interval && hi > lo) /* shrunk */
				hi--;
			break;
		case 4:
			if (interval) /* to the top */
				hi = top;
			break;
		case 5:
			if (interval && lo > 1 && below(2)) /* one before it that touches */
				add_range(l, family, lo - 2, lo - 1);
			break;
		default:
			break;
		}
		add_range(l, family, lo, hi);
	}
	for (size_t i = below(3); i > 0; i--) {
		u128 lo = anchor(family, interval);
		u128 hi = interval && lo + 9 > lo && lo + 9 <= top ? lo + below(10) : lo;

		add_range(l, family, lo, hi);
	}
	if (interval)
		range_list_normalize(l);
	else
		range_list_sort_unique(l);
}

/* One endpoint whose only rule names one set: its plan's sets are that
 * set's v4 and v6 members. */
struct one {
	struct bundle b;
	struct bundle_set set;
	struct bundle_endpoint ep;
	struct bundle_rule rule;
	uint32_t ref;
	struct nft_plan p;
};

static void one_plan(struct one *o, bool interval, struct range_list *v4, struct range_list *v6)
{
	char err[128];

	memset(o, 0, sizeof(*o));
	o->set =
	    (struct bundle_set){.id = "g", .kind = interval ? SET_RANGES : SET_HOSTS, .v4 = *v4, .v6 = *v6};
	o->rule = (struct bundle_rule){
	    .id = "p/ingress/0", .policy = "p", .sets = &o->ref, .n_sets = 1, .any_port = true};
	o->ep.name = "e";
	o->ep.chains[DIR_INGRESS] = (struct bundle_chain){.rules = &o->rule,
							  .n_rules = 1,
							  .fallback = VERDICT_DROP,
							  .fallback_reason = RULE_ID_DEFAULT_DENY};
	o->ep.chains[DIR_EGRESS] =
	    (struct bundle_chain){.fallback = VERDICT_ACCEPT, .fallback_reason = RULE_ID_DEFAULTS};
	o->b =
	    (struct bundle){.node = "n", .endpoints = &o->ep, .n_endpoints = 1, .sets = &o->set, .n_sets = 1};
	if (nft_plan_build(&o->p, &o->b, &o->ep, NULL, NFT_FORM_LINEAR, err, sizeof(err)) < 0 ||
	    o->p.n_sets != 2) {
		fprintf(stderr, "  plan: %s\n", err);
		abort();
	}
}

/* An element as the kernel identifies it. */
struct elem {
	uint8_t key[16];
	bool end, top, more, add;
	size_t set; /* plan set index */
};

struct elems {
	struct elem *v;
	size_t n, cap;
	const struct nft_plan *plan;
};

static int collect(void *arg, const struct nft_elem_dest *dest, bool add, const struct nft_elem *e)
{
	const struct nft_plan_set *ps = dest->set;
	struct elems *es = arg;

	if (es->n == es->cap) {
		es->cap = es->cap ? 2 * es->cap : 64;
		es->v = realloc(es->v, es->cap * sizeof(*es->v));
		if (!es->v)
			abort();
	}
	struct elem *x = &es->v[es->n++];

	memset(x, 0, sizeof(*x));
	memcpy(x->key, e->key, nft_addr_len(ps->family));
	x->end = e->end;
	x->top = e->top;
	x->more = e->more;
	x->add = add;
	x->set = (size_t)(ps - es->plan->sets);
	return 0;
}

static int elem_cmp(const void *a, const void *b)
{
	const struct elem *x = a, *y = b;
	int c = memcmp(x->key, y->key, sizeof(x->key));

	return c ? c : (int)x->end - (int)y->end;
}

static struct elem *model_find(struct elems *m, const struct elem *e)
{
	return m->n ? bsearch(e, m->v, m->n, sizeof(*m->v), elem_cmp) : NULL;
}

static void model_sort(struct elems *m)
{
	if (m->n)
		qsort(m->v, m->n, sizeof(*m->v), elem_cmp);
}

/* Every element of set i of p, as the kernel would hold it after a full
 * build. */
static void all_of(const struct nft_plan *p, size_t i, struct elems *out)
{
	*out = (struct elems){.plan = p};
	struct nft_elem_dest d = {.set = &p->sets[i]};

	CHECK(nft_elements_all(p, &d, collect, out) == 0);
}

/* The members the elements of an interval set (sorted) stand for, checked
 * against l: starts and ends alternate, an end at hi + 1, a top start runs
 * to the end; for a hash set, every address of l once. */
static bool elements_mean(const struct elems *m, const struct range_list *l, bool interval, unsigned len)
{
	u128 top = len == 4 ? (u128)UINT32_MAX : ~(u128)0;

	if (interval) {
		size_t k = 0;

		for (size_t i = 0; i < l->n; i++) {
			u128 lo = value_of(l->v[i].lo.bytes, len), hi = value_of(l->v[i].hi.bytes, len);

			if (k >= m->n || m->v[k].end || value_of(m->v[k].key, len) != lo)
				return false;
			k++;
			if (hi == top)
				continue;
			if (k >= m->n || !m->v[k].end || value_of(m->v[k].key, len) != hi + 1)
				return false;
			k++;
		}
		return k == m->n;
	}
	u128 prev = 0;
	size_t k = 0;

	for (size_t i = 0; i < l->n; i++) {
		u128 lo = value_of(l->v[i].lo.bytes, len), hi = value_of(l->v[i].hi.bytes, len);

		for (u128 a = lo;; a++) {
			if (!(k > 0 && a <= prev)) { /* overlapping ranges: each address once */
				if (k >= m->n || m->v[k].end || value_of(m->v[k].key, len) != a)
					return false;
				prev = a;
				k++;
			}
			if (a == hi)
				break;
		}
	}
	return k == m->n;
}

/* old + diff(old, now) = now, for both sets; false with a message when not.
 * (A hash set whose run of addresses is long, or crosses a 64-bit
 * boundary, is planned as an interval set: the plan says which.) */
static bool check_delta(const struct nft_plan *old, const struct nft_plan *now)
{
	struct elems d = {.plan = now};
	bool ok = true, seen_add = false;

	if (!nft_plan_same_shape(old, now)) {
		fprintf(stderr, "  plans not of one shape\n");
		return false;
	}
	if (nft_elements_delta(old, now, collect, &d) < 0) {
		fprintf(stderr, "  the delta failed\n");
		return false;
	}
	/* Every deletion first; an interval's start and end together. */
	for (size_t i = 0; ok && i < d.n; i++) {
		const struct elem *e = &d.v[i];
		bool interval = now->sets[e->set].interval;

		if (seen_add && !e->add) {
			fprintf(stderr, "  a deletion after an addition\n");
			ok = false;
		}
		seen_add |= e->add;
		if (!interval && (e->end || e->top || e->more)) {
			fprintf(stderr, "  a hash set's element with interval flags\n");
			ok = false;
		}
		if (interval && !e->end) {
			bool paired = i + 1 < d.n && d.v[i + 1].end && d.v[i + 1].set == e->set &&
				      d.v[i + 1].add == e->add;

			if (e->top == e->more || (e->more && !paired)) {
				fprintf(stderr,
					"  an interval's start without its end, or an open one with one\n");
				ok = false;
			}
		}
		if (interval && e->end && (i == 0 || d.v[i - 1].end || !d.v[i - 1].more)) {
			fprintf(stderr, "  an end element without its start\n");
			ok = false;
		}
	}
	for (size_t s = 0; ok && s < 2; s++) {
		unsigned len = nft_addr_len(now->sets[s].family);
		bool interval = now->sets[s].interval;
		struct elems m, want;

		all_of(old, s, &m);
		model_sort(&m);
		for (size_t i = 0; ok && i < d.n; i++) {
			struct elem *e = &d.v[i], *there;

			if (e->set != s)
				continue;
			there = model_find(&m, e);
			if (!e->add && !there) {
				fprintf(stderr, "  set %zu: deletes an element it does not hold\n", s);
				ok = false;
			} else if (!e->add) {
				*there = m.v[--m.n];
				model_sort(&m);
			} else if (there) {
				fprintf(stderr, "  set %zu: adds an element it holds already\n", s);
				ok = false;
			} else {
				collect(&m, &(struct nft_elem_dest){.set = &now->sets[s]}, true,
					&(struct nft_elem){.key = e->key, .end = e->end});
				model_sort(&m);
			}
		}
		all_of(now, s, &want);
		model_sort(&want);
		if (ok && m.n != want.n) {
			fprintf(stderr, "  set %zu: %zu elements after the delta, %zu wanted\n", s, m.n,
				want.n);
			ok = false;
		}
		for (size_t i = 0; ok && i < m.n; i++)
			ok = elem_cmp(&m.v[i], &want.v[i]) == 0;
		if (!ok)
			fprintf(stderr, "  set %zu: other elements after the delta than wanted\n", s);
		if (ok && !elements_mean(&want, now->sets[s].members, interval, len)) {
			fprintf(stderr, "  set %zu: the elements do not mean the members\n", s);
			ok = false;
		}
		free(m.v);
		free(want.v);
	}
	free(d.v);
	return ok;
}

static uint64_t seed(void)
{
	const char *s = getenv("BH_TEST_SEED");

	return s ? strtoull(s, NULL, 10) : 0x5eed2026ULL;
}

/* The plans of old (a4, a6) and new (b4, b6) members: diff both ways
 * (and old to itself, which must be empty of changes when the random
 * ones run); frees the lists. */
static bool both_ways(bool interval, struct range_list *a4, struct range_list *a6, struct range_list *b4,
		      struct range_list *b6)
{
	struct one old, now;
	bool ok;

	one_plan(&old, interval, a4, a6);
	one_plan(&now, interval, b4, b6);
	for (size_t i = 0; i < 2; i++)
		CHECK(old.p.sets[i].interval == interval && now.p.sets[i].interval == interval);
	ok = check_delta(&old.p, &now.p) && check_delta(&now.p, &old.p) && check_delta(&old.p, &old.p);
	nft_plan_release(&old.p);
	nft_plan_release(&now.p);
	range_list_release(a4);
	range_list_release(a6);
	range_list_release(b4);
	range_list_release(b6);
	return ok;
}

static void randomised(bool interval, unsigned trials)
{
	uint64_t s0 = seed();

	rng_state = s0 * 2 + 1 + interval;
	for (unsigned t = 0; t < trials; t++) {
		struct range_list a4, a6, b4, b6;

		random_list(&a4, AF_INET, interval);
		random_list(&a6, AF_INET6, interval);
		mutate(&a4, &b4, AF_INET, interval);
		mutate(&a6, &b6, AF_INET6, interval);
		bool ok = both_ways(interval, &a4, &a6, &b4, &b6);
		if (!ok) {
			fprintf(stderr, "  %s sets, trial %u: BH_TEST_SEED=%llu\n",
				interval ? "interval" : "hash", t, (unsigned long long)s0);
			CHECK(ok);
			return;
		}
	}
}

TEST(randomised_hash_sets_old_plus_diff_is_new)
{
	randomised(false, 3000);
}

TEST(randomised_interval_sets_old_plus_diff_is_new)
{
	randomised(true, 3000);
}

/* The cases the random ones must include, spelled out. */
static void delta_case(int family, bool interval, u128 olo, u128 ohi, u128 nlo, u128 nhi, bool old_empty,
		       bool new_empty)
{
	struct range_list a4, a6, b4, b6;

	range_list_init(&a4, NULL);
	range_list_init(&a6, NULL);
	range_list_init(&b4, NULL);
	range_list_init(&b6, NULL);
	if (!old_empty)
		add_range(family == AF_INET ? &a4 : &a6, family, olo, ohi);
	if (!new_empty)
		add_range(family == AF_INET ? &b4 : &b6, family, nlo, nhi);
	CHECK(both_ways(interval, &a4, &a6, &b4, &b6));
}

TEST(empty_to_the_whole_space_and_back)
{
	for (int f = 0; f < 2; f++) {
		int family = f ? AF_INET6 : AF_INET;

		delta_case(family, true, 0, 0, 0, top_of(family), true, false);
		/* One start element, open: nothing follows the top. */
		struct range_list all, none, *v4, *v6;
		struct one o;
		struct elems m;

		range_list_init(&all, NULL);
		range_list_init(&none, NULL);
		add_range(&all, family, 0, top_of(family));
		v4 = family == AF_INET ? &all : &none;
		v6 = family == AF_INET ? &none : &all;
		one_plan(&o, true, v4, v6);
		all_of(&o.p, family == AF_INET ? 0 : 1, &m);
		CHECK(m.n == 1 && m.v[0].top && !m.v[0].end && !m.v[0].more);
		CHECK(value_of(m.v[0].key, nft_addr_len(family)) == 0);
		free(m.v);
		nft_plan_release(&o.p);
		range_list_release(&all);
	}
}

TEST(ranges_touching_and_at_the_top)
{
	for (int f = 0; f < 2; f++) {
		int family = f ? AF_INET6 : AF_INET;
		u128 top = top_of(family);

		delta_case(family, true, 10, 20, 21, 30, false, false);			/* touching after */
		delta_case(family, true, 10, 20, 10, 21, false, false);			/* grown by one */
		delta_case(family, true, top - 5, top, top - 6, top, false, false);	/* at the top */
		delta_case(family, true, top - 9, top - 1, top - 9, top, false, false); /* end at the top */
		delta_case(family, false, top - 3, top, top - 1, top, false, false);	/* hosts at the top */
		delta_case(family, false, 0, 3, 0, 0, false, false);
	}
}

int main(void)
{
	return test_main();
}
