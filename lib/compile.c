/* The compiler: policy + inventory → per-node bundles (DESIGN §1, §2).
 *
 * Everything order-dependent is sorted (endpoints by name, sets by id,
 * policies by order then name), so the same inputs give the same bundle. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/arena.h"
#include "bulkhead/compile.h"

bool compile_group_selects(const struct policy_group *g, const struct endpoint *ep)
{
	return g->kind == GROUP_LABEL && selector_matches(&g->selector, &ep->labels);
}

/* A set a node's rules reference: a group, in the form its rules need. */
struct set_ref {
	const struct policy_group *g;
	bool deny; /* the deny form of a label group (bundle.h) */
	const char *id;
};

/* Whether peer g of a rule with this action takes its group's deny form. */
static bool ref_is_deny(const struct policy_group *g, enum rule_action action)
{
	return g->kind == GROUP_LABEL && action == ACTION_DENY;
}

/* strcmp(id + suffix, s) without building the concatenation. */
static int id_cmp(const char *id, const char *suffix, const char *s)
{
	size_t n = strlen(id);
	int c = strncmp(id, s, n);
	return c ? c : strcmp(suffix, s + n);
}

static int set_ref_cmp(const void *a, const void *b)
{
	return strcmp(((const struct set_ref *)a)->id, ((const struct set_ref *)b)->id);
}

static uint32_t set_index_of(const struct bundle *b, const struct policy_group *g, enum rule_action action)
{
	const char *suffix = ref_is_deny(g, action) ? BUNDLE_SET_DENY_SUFFIX : "";
	size_t lo = 0, hi = b->n_sets;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = id_cmp(g->id, suffix, b->sets[mid].id);
		if (c == 0)
			return (uint32_t)mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	abort(); /* every referenced group was turned into a set */
}

static int build_set(struct bundle *b, const struct set_ref *ref, const struct inventory *inv,
		     struct bundle_set *s)
{
	const struct policy_group *g = ref->g;
	struct arena *a = b->arena;
	s->id = arena_strdup(a, ref->id);
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
	/* A label group: the addresses of its members on every node. An
	 * address another endpoint claims too (inventory.h: conflicts) fails
	 * closed: out of the form allow rules use, in the one deny rules use. */
	s->kind = SET_HOSTS;
	for (size_t i = 0; i < inv->n; i++) {
		const struct endpoint *ep = &inv->v[i];
		if (!compile_group_selects(g, ep))
			continue;
		for (size_t k = 0; k < ep->n_addrs; k++) {
			if (!ref->deny && inventory_addr_conflicted(inv, &ep->addrs[k]))
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

/* Every set the rules of the applying policies reference, sorted by id
 * and unique, in *out (malloc'd; ids in tmp). O(r log r) in the references. */
static int collect_set_refs(const struct policy_doc *doc, const bool *applies, struct arena *tmp,
			    struct set_ref **out, size_t *n_out)
{
	size_t n = 0;
	for (size_t i = 0; i < doc->n_policies; i++) {
		for (enum direction dir = 0; applies[i] && dir < DIR_COUNT; dir++) {
			const struct rule_list *rl = &doc->policies[i].rules[dir];
			for (size_t k = 0; rl->present && k < rl->n; k++)
				n += rl->v[k].n_peers;
		}
	}
	struct set_ref *refs = calloc(n ? n : 1, sizeof(*refs));
	if (!refs)
		return -ENOMEM;
	n = 0;
	for (size_t i = 0; i < doc->n_policies; i++) {
		for (enum direction dir = 0; applies[i] && dir < DIR_COUNT; dir++) {
			const struct rule_list *rl = &doc->policies[i].rules[dir];
			for (size_t k = 0; rl->present && k < rl->n; k++) {
				const struct policy_rule *pr = &rl->v[k];
				for (size_t p = 0; p < pr->n_peers; p++) {
					struct set_ref *r = &refs[n++];
					r->g = pr->peers[p];
					r->deny = ref_is_deny(r->g, pr->action);
					r->id = r->deny ? arena_printf(tmp, "%s%s", r->g->id,
								       BUNDLE_SET_DENY_SUFFIX)
							: r->g->id;
					if (!r->id) {
						free(refs);
						return -ENOMEM;
					}
				}
			}
		}
	}
	if (n)
		qsort(refs, n, sizeof(*refs), set_ref_cmp);
	size_t u = 0;
	for (size_t i = 0; i < n; i++) {
		if (u == 0 || strcmp(refs[u - 1].id, refs[i].id) != 0)
			refs[u++] = refs[i];
	}
	*out = refs;
	*n_out = u;
	return 0;
}

/* A named-port table a node's egress rules reference (bundle.h). */
struct named_ref {
	uint8_t proto;
	const char *name; /* the document's */
	bool deny;
	char id[BUNDLE_NAMED_ID_MAX];
};

static void named_id(char *buf, uint8_t proto, const char *name, enum rule_action action)
{
	snprintf(buf, BUNDLE_NAMED_ID_MAX, "%s/%s%s", proto_name(proto), name,
		 action == ACTION_DENY ? BUNDLE_SET_DENY_SUFFIX : "");
}

static int named_ref_cmp(const void *a, const void *b)
{
	return strcmp(((const struct named_ref *)a)->id, ((const struct named_ref *)b)->id);
}

/* Every named-port table the egress rules of the applying policies
 * reference, sorted by id and unique, in *out (malloc'd). */
static int collect_named_refs(const struct policy_doc *doc, const bool *applies, struct named_ref **out,
			      size_t *n_out)
{
	size_t n = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < doc->n_policies; i++) {
			const struct rule_list *rl = &doc->policies[i].rules[DIR_EGRESS];
			for (size_t k = 0; applies[i] && rl->present && k < rl->n; k++) {
				const struct policy_rule *pr = &rl->v[k];
				for (size_t p = 0; p < pr->n_ports; p++) {
					const struct port_match *m = &pr->ports[p];
					if (!m->name)
						continue;
					if (pass == 1) {
						struct named_ref *r = &(*out)[n];
						r->proto = m->proto;
						r->name = m->name;
						r->deny = pr->action == ACTION_DENY;
						named_id(r->id, m->proto, m->name, pr->action);
					}
					n++;
				}
			}
		}
		if (pass == 0) {
			*out = calloc(n ? n : 1, sizeof(**out));
			if (!*out)
				return -ENOMEM;
			n = 0;
		}
	}
	struct named_ref *refs = *out;
	if (n)
		qsort(refs, n, sizeof(*refs), named_ref_cmp);
	size_t u = 0;
	for (size_t i = 0; i < n; i++) {
		if (u == 0 || strcmp(refs[u - 1].id, refs[i].id) != 0)
			refs[u++] = refs[i];
	}
	*n_out = u;
	return 0;
}

/* What every endpoint the controller knows calls proto/name, as (address,
 * number) pairs. A contested address fails closed as in build_set: out
 * of the allow table, in the deny table with every claimant's number. */
static int build_named_table(struct bundle *b, const struct named_ref *ref, const struct inventory *inv,
			     struct bundle_named_port *t)
{
	struct arena *a = b->arena;
	t->id = arena_strdup(a, ref->id);
	t->name = arena_strdup(a, ref->name);
	t->proto = ref->proto;
	if (!t->id || !t->name)
		return -ENOMEM;
	size_t n = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < inv->n; i++) {
			const struct endpoint *ep = &inv->v[i];
			const struct endpoint_port *port = inventory_port_of(ep, ref->name);
			if (!port || port->proto != ref->proto)
				continue;
			for (size_t k = 0; k < ep->n_addrs; k++) {
				if (!ref->deny && inventory_addr_conflicted(inv, &ep->addrs[k]))
					continue;
				if (pass == 1)
					t->v[n] = (struct bundle_named_addr){ep->addrs[k], port->port};
				n++;
			}
		}
		if (pass == 0) {
			t->v = arena_calloc(a, n ? n : 1, sizeof(*t->v));
			if (!t->v)
				return -ENOMEM;
			n = 0;
		}
	}
	if (n)
		qsort(t->v, n, sizeof(*t->v), bundle_named_addr_cmp);
	t->n = 0;
	for (size_t i = 0; i < n; i++) {
		if (t->n == 0 || bundle_named_addr_cmp(&t->v[t->n - 1], &t->v[i]) != 0)
			t->v[t->n++] = t->v[i];
	}
	return 0;
}

static uint32_t named_index_of(const struct bundle *b, const struct port_match *m, enum rule_action action)
{
	char id[BUNDLE_NAMED_ID_MAX];
	named_id(id, m->proto, m->name, action);
	size_t lo = 0, hi = b->n_named_ports;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(id, b->named_ports[mid].id);
		if (c == 0)
			return (uint32_t)mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	abort(); /* every referenced name was turned into a table */
}

/* A rule's ports as the bundle carries them (DESIGN §2 "Named ports"):
 * numbers as they are; an ingress name resolved on ep, the endpoint the
 * chain protects, and left out where ep does not define it with that
 * protocol; an egress name kept, with its table. */
static void compile_ports(const struct bundle *b, const struct endpoint *ep, enum direction dir,
			  const struct policy_rule *pr, struct bundle_rule *br)
{
	br->n_ports = 0;
	for (size_t p = 0; p < pr->n_ports; p++) {
		struct port_match m = pr->ports[p];
		if (m.name && dir == DIR_INGRESS) {
			const struct endpoint_port *port = inventory_port_of(ep, m.name);
			if (!port || port->proto != m.proto)
				continue;
			m.lo = m.hi = port->port;
			m.name = NULL;
		} else if (m.name) {
			m.named_table = named_index_of(b, &m, pr->action);
			m.name = b->named_ports[m.named_table].name;
		}
		br->ports[br->n_ports++] = m;
	}
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

/* Which sets the rule being built already references: seen[set] == stamp. */
struct set_seen {
	size_t *seen;
	size_t stamp;
};

static int build_chain(struct bundle *b, const struct policy_doc *doc, const struct endpoint *ep,
		       const struct policy **pols, size_t n_pols, enum direction dir, struct set_seen *ss,
		       struct bundle_chain *chain)
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
			ss->stamp++;
			for (size_t p = 0; p < pr->n_peers; p++) {
				uint32_t idx = set_index_of(b, pr->peers[p], pr->action);
				if (ss->seen[idx] != ss->stamp) {
					ss->seen[idx] = ss->stamp;
					br->sets[br->n_sets++] = idx;
				}
			}
			compile_ports(b, ep, dir, pr, br);
			/* Every port entry named what ep does not define: the
			 * rule matches nothing here. */
			if (!pr->any_port && br->n_ports == 0)
				memset(&chain->rules[--chain->n_rules], 0, sizeof(*br));
		}
	}

	/* DESIGN §2 steps 3 and 4. An endpoint isolated only by audit-mode
	 * policies reports its would-be default deny as audit, but an audit
	 * policy never opens what the document's defaults close. */
	if (!isolated) {
		chain->fallback = doc->defaults[dir] == ACTION_DENY ? VERDICT_DROP : VERDICT_ACCEPT;
		chain->fallback_reason = RULE_ID_DEFAULTS;
	} else if (enforce_isolates) {
		chain->fallback = VERDICT_DROP;
		chain->fallback_reason = RULE_ID_DEFAULT_DENY;
	} else if (doc->defaults[dir] == ACTION_DENY) {
		chain->fallback = VERDICT_DROP;
		chain->fallback_reason = RULE_ID_DEFAULTS;
	} else {
		chain->fallback = VERDICT_AUDIT;
		chain->fallback_reason = RULE_ID_DEFAULT_DENY;
	}
	return 0;
}

struct bundle *compile_bundle(const struct policy_doc *doc, const struct inventory *inv, const char *node)
{
	struct set_ref *refs = NULL;
	size_t n_refs = 0;
	struct named_ref *named = NULL;
	size_t n_named = 0;
	struct set_seen ss = {0};
	const struct policy **pols = calloc(doc->n_policies ? doc->n_policies : 1, sizeof(*pols));
	bool *applies = calloc(doc->n_policies ? doc->n_policies : 1, sizeof(*applies));
	struct arena *tmp = arena_new();
	struct arena *arena = arena_new();
	struct bundle *b = arena ? arena_alloc(arena, sizeof(*b)) : NULL;
	if (!pols || !applies || !tmp || !b)
		goto err_free;
	b->arena = arena;
	b->node = arena_strdup(arena, node);
	b->observe = doc->observe;
	if (!b->node)
		goto err_free;

	/* The node's endpoints are contiguous: the inventory is sorted. */
	size_t first = 0, n_local = 0;
	while (first < inv->n && strcmp(inv->v[first].node, node) != 0)
		first++;
	while (first + n_local < inv->n && strcmp(inv->v[first + n_local].node, node) == 0)
		n_local++;

	/* Pass 1: the sets that the rules of the policies applying to any
	 * local endpoint reference. */
	for (size_t e = 0; e < n_local; e++) {
		for (size_t i = 0; i < doc->n_policies; i++)
			applies[i] = applies[i] ||
				     compile_group_selects(doc->policies[i].applies_to, &inv->v[first + e]);
	}
	if (collect_set_refs(doc, applies, tmp, &refs, &n_refs) < 0)
		goto err_free;
	b->sets = arena_calloc(arena, n_refs ? n_refs : 1, sizeof(*b->sets));
	ss.seen = calloc(n_refs ? n_refs : 1, sizeof(*ss.seen));
	if (!b->sets || !ss.seen)
		goto err_free;
	for (size_t i = 0; i < n_refs; i++) {
		if (build_set(b, &refs[i], inv, &b->sets[i]) < 0)
			goto err_free;
	}
	b->n_sets = n_refs;
	if (collect_named_refs(doc, applies, &named, &n_named) < 0)
		goto err_free;
	b->named_ports = arena_calloc(arena, n_named ? n_named : 1, sizeof(*b->named_ports));
	if (!b->named_ports)
		goto err_free;
	for (size_t i = 0; i < n_named; i++) {
		if (build_named_table(b, &named[i], inv, &b->named_ports[i]) < 0)
			goto err_free;
	}
	b->n_named_ports = n_named;

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
			if (build_chain(b, doc, ep, pols, n_pols, dir, &ss, &be->chains[dir]) < 0)
				goto err_free;
		}
	}
	b->n_endpoints = n_local;

	if (bundle_update_hash(b) < 0)
		goto err_free;
	free(ss.seen);
	free(named);
	free(refs);
	arena_free(tmp);
	free(applies);
	free(pols);
	return b;

err_free:
	free(ss.seen);
	free(named);
	free(refs);
	arena_free(tmp);
	free(applies);
	free(pols);
	if (b)
		bundle_free(b);
	else
		arena_free(arena);
	errno = ENOMEM;
	return NULL;
}
