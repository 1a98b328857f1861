/* nft-elements: set and map members as nft elements, and the element diff
 * of two plans (nft-elements.h). Pure. */
#include <string.h>

#include "nft-addr.h"
#include "nft-elements.h"

/* The elements of a list that another lacks go to fn. */
struct diff {
	struct nft_elem_dest dest;
	const struct nft_plan *p; /* names a map's targets */
	bool add;
	nft_elem_fn fn;
	void *arg;
};

static unsigned dest_addr_len(const struct diff *d)
{
	return nft_addr_len(d->dest.set ? d->dest.set->family : d->dest.map->family);
}

static int put(const struct diff *d, const uint8_t *key, bool end, bool top, bool more, const char *chain)
{
	struct nft_elem e = {
	    .key = key, .key_len = dest_addr_len(d), .end = end, .top = top, .more = more, .chain = chain};

	return d->fn(d->arg, &d->dest, d->add, &e);
}

/* lo..hi of an interval set or map: start (with the goto, when added to a
 * map) and end + 1. */
static int put_interval(const struct diff *d, const uint8_t *lo, const uint8_t *hi, const char *chain)
{
	unsigned len = dest_addr_len(d);
	bool top = nft_addr_is_top(hi, len);
	uint8_t end[16];
	int ret;

	ret = put(d, lo, false, top, !top, d->add ? chain : NULL);
	if (ret < 0 || top)
		return ret;
	memcpy(end, hi, len);
	nft_addr_increment(end, len);
	return put(d, end, true, false, false, NULL);
}

static int put_range(const struct diff *d, const struct addr_range *r)
{
	return put_interval(d, r->lo.bytes, r->hi.bytes, NULL);
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
	unsigned len = dest_addr_len(d);
	int ret = 0;

	if (!b)
		b = &none;
	/* Most sets of a delta did not change: no walk for them. */
	if (a->n == b->n && (a->n == 0 || a->v == b->v || memcmp(a->v, b->v, a->n * sizeof(*a->v)) == 0))
		return 0;
	if (d->dest.set->interval) {
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
		ret = put(d, ia.cur, false, false, false, NULL);
	}
	return ret;
}

/* ---- named sets -------------------------------------------------------- */

/* The keys of named set a (n_a of them) that b's lack; both sorted. */
static int diff_keys(const struct diff *d, const uint8_t (*a)[NFT_NAMED_KEY_MAX], size_t n_a,
		     const uint8_t (*b)[NFT_NAMED_KEY_MAX], size_t n_b)
{
	unsigned len = nft_plan_named_key_len(d->dest.set->family);
	size_t j = 0;
	int ret = 0;

	if (n_a == n_b && (n_a == 0 || a == b || memcmp(a, b, n_a * sizeof(*a)) == 0))
		return 0;
	for (size_t i = 0; ret == 0 && i < n_a; i++) {
		while (j < n_b && memcmp(b[j], a[i], NFT_NAMED_KEY_MAX) < 0)
			j++;
		if (j < n_b && memcmp(b[j], a[i], NFT_NAMED_KEY_MAX) == 0)
			continue;
		struct nft_elem e = {.key = a[i], .key_len = len};

		ret = d->fn(d->arg, &d->dest, d->add, &e);
	}
	return ret;
}

/* ---- maps ---------------------------------------------------------------- */

/* A protocol and port key: the protocol's 4-byte field, the value's. */
static void port_key(uint8_t key[8], const uint8_t v[3])
{
	memset(key, 0, 8);
	key[0] = v[0];
	key[4] = v[1];
	key[5] = v[2];
}

static int put_map_elem(const struct diff *d, const struct nft_plan_elem *e)
{
	const struct nft_plan_map *m = d->dest.map;
	const char *chain = d->add ? d->p->chains[e->target].name : NULL;

	switch (m->kind) {
	case NFT_MAP_HOSTS:
		return put(d, e->lo, false, false, false, chain);
	case NFT_MAP_RANGES:
		return put_interval(d, e->lo, e->hi, chain);
	default: {
		uint8_t key[8], key_end[8];
		struct nft_elem el = {.key = key, .key_end = key_end, .key_len = 8, .chain = chain};

		port_key(key, e->lo);
		port_key(key_end, e->hi);
		return d->fn(d->arg, &d->dest, d->add, &el);
	}
	}
}

/* Whether chain x of one plan and chain y of another have one name. The
 * map form names a chain after its direction and kind, and a rule's chain
 * after the rule's position, a class's after its key (nft-plan-maps.c):
 * those compare faster than the names, once per element of a delta. */
static bool same_chain(const struct nft_plan_chain *x, const struct nft_plan_chain *y)
{
	if (x->kind != y->kind || x->dir != y->dir)
		return false;
	switch (x->kind) {
	case NFT_PLAN_RULE_CHAIN:
		return x->pos == y->pos;
	case NFT_PLAN_CLASS_CHAIN:
		return x->key == y->key;
	case NFT_PLAN_FALLBACK_CHAIN:
		return true;
	default:
		return strcmp(x->name, y->name) == 0;
	}
}

/* Whether two elements of maps of one kind are the same element: keys,
 * and the chain. A plan's keys are zero past their length (nft-plan.h),
 * so all 16 bytes compare as fast as a number. */
static bool elem_same(const struct nft_plan *pa, const struct nft_plan_elem *a, const struct nft_plan *pb,
		      const struct nft_plan_elem *b)
{
	return nft_addr_order(a->lo, b->lo, 16) == 0 && nft_addr_order(a->hi, b->hi, 16) == 0 &&
	       same_chain(&pa->chains[a->target], &pb->chains[b->target]);
}

/* The elements of map a (of plan pa) that map b (of pb) lacks; b NULL:
 * all of a. Both sorted by lo and disjoint. */
static int diff_maps(const struct diff *d, const struct nft_plan *pa, const struct nft_plan_map *a,
		     const struct nft_plan *pb, const struct nft_plan_map *b)
{
	struct diff dd = *d;
	size_t j = 0;
	int ret = 0;

	dd.p = pa;
	for (size_t i = 0; ret == 0 && i < a->n_elems; i++) {
		const struct nft_plan_elem *e = &a->elems[i];

		while (b && j < b->n_elems && nft_addr_order(b->elems[j].lo, e->lo, 16) < 0)
			j++;
		if (b && j < b->n_elems && elem_same(pa, e, pb, &b->elems[j]))
			continue;
		ret = put_map_elem(&dd, e);
	}
	return ret;
}

int nft_elements_all(const struct nft_plan *p, const struct nft_elem_dest *dest, nft_elem_fn fn, void *arg)
{
	struct diff d = {.dest = *dest, .p = p, .add = true, .fn = fn, .arg = arg};

	if (dest->map)
		return diff_maps(&d, p, dest->map, NULL, NULL);
	if (dest->set->named)
		return diff_keys(&d, (const uint8_t(*)[NFT_NAMED_KEY_MAX])dest->set->keys, dest->set->n_keys,
				 NULL, 0);
	return diff_lists(&d, dest->set->members, NULL);
}

static bool is_class_map(const struct nft_plan_map *m)
{
	return m->kind == NFT_MAP_PORTS || m->kind == NFT_MAP_ICMP;
}

int nft_elements_delta(const struct nft_plan *old, const struct nft_plan *now, nft_elem_fn fn, void *arg)
{
	int ret = 0;

	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; ret == 0 && i < now->n_sets; i++) {
			struct diff d = {
			    .dest = {.set = &now->sets[i]}, .add = pass == 1, .fn = fn, .arg = arg};
			const struct nft_plan_set *o = &old->sets[i], *n = &now->sets[i];

			if (n->named) {
				const uint8_t(*ko)[NFT_NAMED_KEY_MAX] =
				    (const uint8_t(*)[NFT_NAMED_KEY_MAX])o->keys;
				const uint8_t(*kn)[NFT_NAMED_KEY_MAX] =
				    (const uint8_t(*)[NFT_NAMED_KEY_MAX])n->keys;

				ret = d.add ? diff_keys(&d, kn, n->n_keys, ko, o->n_keys)
					    : diff_keys(&d, ko, o->n_keys, kn, n->n_keys);
				continue;
			}
			ret = d.add ? diff_lists(&d, n->members, o->members)
				    : diff_lists(&d, o->members, n->members);
		}
		/* The address maps, paired in plan order (same shape). */
		size_t j = 0;

		for (size_t i = 0; ret == 0 && i < now->n_maps; i++) {
			const struct nft_plan_map *is = &now->maps[i];

			if (is_class_map(is))
				continue;
			while (j < old->n_maps && is_class_map(&old->maps[j]))
				j++;
			if (j == old->n_maps)
				break;
			const struct nft_plan_map *was = &old->maps[j++];
			struct diff d = {.dest = {.map = is}, .add = pass == 1, .fn = fn, .arg = arg};

			ret = d.add ? diff_maps(&d, now, is, old, was) : diff_maps(&d, old, was, now, is);
		}
	}
	return ret;
}
