/* nft-elements: set members as nft elements, and the element diff of two
 * plans (nft-elements.h). Pure. */
#include <string.h>

#include "nft-addr.h"
#include "nft-elements.h"

/* The elements of ps's members that b lacks go to fn. */
struct diff {
	const struct nft_plan_set *ps;
	bool add;
	nft_elem_fn fn;
	void *arg;
};

static int put(const struct diff *d, const uint8_t *key, bool end, bool top, bool more)
{
	struct nft_elem e = {.key = key, .end = end, .top = top, .more = more};

	return d->fn(d->arg, d->ps, d->add, &e);
}

static int put_range(const struct diff *d, const struct addr_range *r)
{
	unsigned len = nft_addr_len(d->ps->family);
	bool top = nft_addr_is_top(r->hi.bytes, len);
	uint8_t end[16];
	int ret;

	ret = put(d, r->lo.bytes, false, top, !top);
	if (ret < 0 || top)
		return ret;
	memcpy(end, r->hi.bytes, len);
	nft_addr_increment(end, len);
	return put(d, end, true, false, false);
}

/* The addresses of a hosts list in ascending order, each once, also when
 * ranges overlap: cur is the smallest address not yet visited, within
 * range i while i < n. */
struct addr_iter {
	const struct range_list *l;
	unsigned len;
	size_t i;
	uint8_t cur[16];
};

static void addr_iter_settle(struct addr_iter *it)
{
	while (it->i < it->l->n) {
		const struct addr_range *r = &it->l->v[it->i];

		if (nft_addr_order(it->cur, r->lo.bytes, it->len) < 0)
			memcpy(it->cur, r->lo.bytes, it->len);
		if (nft_addr_order(it->cur, r->hi.bytes, it->len) <= 0)
			return;
		it->i++;
	}
}

static void addr_iter_init(struct addr_iter *it, const struct range_list *l, unsigned len)
{
	*it = (struct addr_iter){.l = l, .len = len};
	addr_iter_settle(it);
}

static bool addr_iter_done(const struct addr_iter *it)
{
	return it->i >= it->l->n;
}

static void addr_iter_next(struct addr_iter *it)
{
	if (nft_addr_increment(it->cur, it->len))
		it->i = it->l->n; /* wrapped: the top address was the last */
	else
		addr_iter_settle(it);
}

/* Moves it to the first address >= key. */
static void addr_iter_seek(struct addr_iter *it, const uint8_t *key)
{
	if (!addr_iter_done(it) && nft_addr_order(it->cur, key, it->len) < 0) {
		memcpy(it->cur, key, it->len);
		addr_iter_settle(it);
	}
}

static int range_cmp(const struct addr_range *a, const struct addr_range *b, unsigned len)
{
	int c = nft_addr_order(a->lo.bytes, b->lo.bytes, len);

	return c ? c : nft_addr_order(a->hi.bytes, b->hi.bytes, len);
}

/* The elements of a that b lacks: single addresses for a hash set; for an
 * interval set every range of a that b does not hold exactly. Both lists
 * sorted by start, as bundle_decode() and the compiler leave them. b NULL:
 * all of a. */
static int diff_lists(const struct diff *d, const struct range_list *a, const struct range_list *b)
{
	static const struct range_list none;
	unsigned len = nft_addr_len(d->ps->family);
	int ret = 0;

	if (!b)
		b = &none;
	/* Most sets of a delta did not change: no walk for them. */
	if (a->n == b->n && (a->n == 0 || a->v == b->v || memcmp(a->v, b->v, a->n * sizeof(*a->v)) == 0))
		return 0;
	if (d->ps->interval) {
		size_t j = 0;

		for (size_t i = 0; ret == 0 && i < a->n; i++) {
			while (j < b->n && range_cmp(&b->v[j], &a->v[i], len) < 0)
				j++;
			if (j < b->n && range_cmp(&b->v[j], &a->v[i], len) == 0)
				continue;
			ret = put_range(d, &a->v[i]);
		}
		return ret;
	}
	struct addr_iter ia, ib;

	addr_iter_init(&ia, a, len);
	addr_iter_init(&ib, b, len);
	for (; ret == 0 && !addr_iter_done(&ia); addr_iter_next(&ia)) {
		addr_iter_seek(&ib, ia.cur);
		if (!addr_iter_done(&ib) && nft_addr_order(ib.cur, ia.cur, len) == 0)
			continue;
		ret = put(d, ia.cur, false, false, false);
	}
	return ret;
}

int nft_elements_all(const struct nft_plan_set *ps, nft_elem_fn fn, void *arg)
{
	struct diff d = {.ps = ps, .add = true, .fn = fn, .arg = arg};

	return diff_lists(&d, ps->members, NULL);
}

int nft_elements_delta(const struct nft_plan *old, const struct nft_plan *now, nft_elem_fn fn, void *arg)
{
	int ret = 0;

	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; ret == 0 && i < now->n_sets; i++) {
			struct diff d = {.ps = &now->sets[i], .add = pass == 1, .fn = fn, .arg = arg};
			const struct range_list *was = old->sets[i].members, *is = now->sets[i].members;

			ret = d.add ? diff_lists(&d, is, was) : diff_lists(&d, was, is);
		}
	}
	return ret;
}
