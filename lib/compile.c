/* The compiler: policy + inventory → per-node bundles (DESIGN §1, §2).
 *
 * Everything order-dependent is sorted (endpoints by name, sets by id,
 * policies by order then name), so the same inputs give the same bundle. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/arena.h"
#include "bulkhead/compile.h"

bool compile_group_selects(const struct policy_group *g, const struct endpoint *ep)
{
	return g->kind == GROUP_LABEL && selector_matches(&g->selector, &ep->labels);
}

/* The groups a node's rules reference, deduplicated by id. */
struct group_index {
	const struct policy_group **v;
	size_t n, cap;
};

static int group_index_add(struct group_index *gi, const struct policy_group *g)
{
	for (size_t i = 0; i < gi->n; i++) {
		if (gi->v[i] == g || strcmp(gi->v[i]->id, g->id) == 0)
			return 0;
	}
	if (gi->n == gi->cap) {
		size_t cap = gi->cap ? gi->cap * 2 : 16;
		const struct policy_group **v = realloc(gi->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		gi->v = v;
		gi->cap = cap;
	}
	gi->v[gi->n++] = g;
	return 0;
}

static int group_id_cmp(const void *a, const void *b)
{
	return strcmp((*(const struct policy_group *const *)a)->id, (*(const struct policy_group *const *)b)->id);
}

static uint32_t set_index_of(const struct bundle *b, const char *id)
{
	size_t lo = 0, hi = b->n_sets;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(id, b->sets[mid].id);
		if (c == 0)
			return (uint32_t)mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	abort(); /* every referenced group was turned into a set */
}

static int build_set(struct bundle *b, const struct policy_group *g, const struct inventory *inv,
		     struct bundle_set *s)
{
	struct arena *a = b->arena;
	s->id = arena_strdup(a, g->id);
	if (!s->id)
		return -ENOMEM;
	range_list_init(&s->v4, a);
	range_list_init(&s->v6, a);
	if (g->kind == GROUP_NETWORK) {
		s->kind = SET_RANGES;
		for (size_t i = 0; i < g->v4.n; i++) {
			if (range_list_add(&s->v4, &g->v4.v[i]) < 0)
				return -ENOMEM;
		}
		for (size_t i = 0; i < g->v6.n; i++) {
			if (range_list_add(&s->v6, &g->v6.v[i]) < 0)
				return -ENOMEM;
		}
		return 0;
	}
	/* A label group: the addresses of its members on every node, but
	 * none that another endpoint claims too (inventory.h: conflicts). */
	s->kind = SET_HOSTS;
	for (size_t i = 0; i < inv->n; i++) {
		const struct endpoint *ep = &inv->v[i];
		if (!compile_group_selects(g, ep))
			continue;
		for (size_t k = 0; k < ep->n_addrs; k++) {
			if (inventory_addr_conflicted(inv, &ep->addrs[k]))
				continue;
			struct addr_range r = {ep->addrs[k], ep->addrs[k]};
			if (range_list_add(ep->addrs[k].family == AF_INET ? &s->v4 : &s->v6, &r) < 0)
				return -ENOMEM;
		}
	}
	range_list_sort_unique(&s->v4);
	range_list_sort_unique(&s->v6);
	return 0;
}

/* The policies that apply to ep, in evaluation order. */
static size_t applying_policies(const struct policy_doc *doc, const struct endpoint *ep,
				const struct policy **out)
{
	size_t n = 0;
	for (size_t i = 0; i < doc->n_policies; i++) {
		if (compile_group_selects(doc->policies[i].applies_to, ep))
			out[n++] = &doc->policies[i];
	}
	return n;
}

static int build_chain(struct bundle *b, const struct policy_doc *doc, const struct policy **pols, size_t n_pols,
		       enum direction dir, struct bundle_chain *chain)
{
	struct arena *a = b->arena;
	size_t n_rules = 0;
	bool isolated = false, enforce_isolates = false;
	for (size_t i = 0; i < n_pols; i++) {
		const struct rule_list *rl = &pols[i]->rules[dir];
		if (!rl->present)
			continue;
		isolated = true;
		enforce_isolates |= pols[i]->mode == MODE_ENFORCE;
		n_rules += rl->n;
	}

	chain->rules = arena_calloc(a, n_rules ? n_rules : 1, sizeof(*chain->rules));
	if (!chain->rules)
		return -ENOMEM;
	for (size_t i = 0; i < n_pols; i++) {
		const struct policy *pol = pols[i];
		const struct rule_list *rl = &pol->rules[dir];
		for (size_t k = 0; rl->present && k < rl->n; k++) {
			const struct policy_rule *pr = &rl->v[k];
			struct bundle_rule *br = &chain->rules[chain->n_rules++];
			br->id = arena_printf(a, "%s/%s/%zu", pol->name, direction_name(dir), k);
			br->policy = arena_strdup(a, pol->name);
			br->index = (uint32_t)k;
			br->action = pr->action;
			br->mode = pol->mode;
			br->any_peer = pr->any_peer;
			br->any_port = pr->any_port;
			br->sets = arena_calloc(a, pr->n_peers ? pr->n_peers : 1, sizeof(*br->sets));
			br->ports = arena_calloc(a, pr->n_ports ? pr->n_ports : 1, sizeof(*br->ports));
			if (!br->id || !br->policy || !br->sets || !br->ports)
				return -ENOMEM;
			/* Two peers naming one group need one reference. */
			for (size_t p = 0; p < pr->n_peers; p++) {
				uint32_t idx = set_index_of(b, pr->peers[p]->id);
				bool seen = false;
				for (size_t q = 0; q < br->n_sets; q++)
					seen |= br->sets[q] == idx;
				if (!seen)
					br->sets[br->n_sets++] = idx;
			}
			if (pr->n_ports)
				memcpy(br->ports, pr->ports, pr->n_ports * sizeof(*br->ports));
			br->n_ports = pr->n_ports;
		}
	}

	/* DESIGN §2 steps 3 and 4. An endpoint isolated only by audit-mode
	 * policies reports its would-be default deny as audit, but an audit
	 * policy never opens what the document's defaults close. */
	if (!isolated) {
		chain->fallback = doc->defaults[dir] == ACTION_DENY ? VERDICT_DROP : VERDICT_ACCEPT;
		chain->fallback_reason = REASON_DEFAULTS;
	} else if (enforce_isolates) {
		chain->fallback = VERDICT_DROP;
		chain->fallback_reason = REASON_DEFAULT_DENY;
	} else if (doc->defaults[dir] == ACTION_DENY) {
		chain->fallback = VERDICT_DROP;
		chain->fallback_reason = REASON_DEFAULTS;
	} else {
		chain->fallback = VERDICT_AUDIT;
		chain->fallback_reason = REASON_DEFAULT_DENY;
	}
	return 0;
}

struct bundle *compile_bundle(const struct policy_doc *doc, const struct inventory *inv, const char *node)
{
	struct group_index groups = {0};
	const struct policy **pols = calloc(doc->n_policies ? doc->n_policies : 1, sizeof(*pols));
	struct arena *arena = arena_new();
	struct bundle *b = arena ? arena_alloc(arena, sizeof(*b)) : NULL;
	if (!pols || !b)
		goto err_free;
	b->arena = arena;
	b->node = arena_strdup(arena, node);
	if (!b->node)
		goto err_free;

	/* The node's endpoints are contiguous: the inventory is sorted. */
	size_t first = 0, n_local = 0;
	while (first < inv->n && strcmp(inv->v[first].node, node) != 0)
		first++;
	while (first + n_local < inv->n && strcmp(inv->v[first + n_local].node, node) == 0)
		n_local++;

	/* Pass 1: which groups the local endpoints' rules reference. */
	for (size_t e = 0; e < n_local; e++) {
		size_t n_pols = applying_policies(doc, &inv->v[first + e], pols);
		for (size_t i = 0; i < n_pols; i++) {
			for (enum direction dir = 0; dir < DIR_COUNT; dir++) {
				const struct rule_list *rl = &pols[i]->rules[dir];
				for (size_t k = 0; rl->present && k < rl->n; k++) {
					for (size_t p = 0; p < rl->v[k].n_peers; p++) {
						if (group_index_add(&groups, rl->v[k].peers[p]) < 0)
							goto err_free;
					}
				}
			}
		}
	}
	if (groups.n)
		qsort(groups.v, groups.n, sizeof(*groups.v), group_id_cmp);
	b->sets = arena_calloc(arena, groups.n ? groups.n : 1, sizeof(*b->sets));
	if (!b->sets)
		goto err_free;
	for (size_t i = 0; i < groups.n; i++) {
		if (build_set(b, groups.v[i], inv, &b->sets[i]) < 0)
			goto err_free;
	}
	b->n_sets = groups.n;

	/* Pass 2: each endpoint's chains. */
	b->endpoints = arena_calloc(arena, n_local ? n_local : 1, sizeof(*b->endpoints));
	if (!b->endpoints)
		goto err_free;
	for (size_t e = 0; e < n_local; e++) {
		const struct endpoint *ep = &inv->v[first + e];
		struct bundle_endpoint *be = &b->endpoints[e];
		be->name = arena_strdup(arena, ep->name);
		be->addrs = arena_calloc(arena, ep->n_addrs ? ep->n_addrs : 1, sizeof(*be->addrs));
		if (!be->name || !be->addrs)
			goto err_free;
		if (ep->n_addrs)
			memcpy(be->addrs, ep->addrs, ep->n_addrs * sizeof(*be->addrs));
		be->n_addrs = ep->n_addrs;
		size_t n_pols = applying_policies(doc, ep, pols);
		for (enum direction dir = 0; dir < DIR_COUNT; dir++) {
			if (build_chain(b, doc, pols, n_pols, dir, &be->chains[dir]) < 0)
				goto err_free;
		}
	}
	b->n_endpoints = n_local;

	if (bundle_update_hash(b) < 0)
		goto err_free;
	free(groups.v);
	free(pols);
	return b;

err_free:
	free(groups.v);
	free(pols);
	if (b)
		bundle_free(b);
	else
		arena_free(arena);
	errno = ENOMEM;
	return NULL;
}
