/* The controller's policy and endpoints → per-node bundles, each node
 * recompiled only when its inputs change (see compiler.h).
 *
 * Which nodes are stale is worked out lazily (prepare): after endpoints
 * changed the inventory is built again, and every node is held against
 * its inputs — the policy's generation, its list's, and the digest of each
 * label group it depends on. A group's digest covers its members'
 * addresses in inventory order with whether each is contested, which is
 * all compile_bundle() reads of the group: equal digests, equal sets. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/bundle.h"
#include "bulkhead/compile.h"
#include "bulkhead/log.h"
#include "bulkhead/proto.h"
#include "bulkhead/ratelimit.h"
#include "compiler.h"

/* A label group's members, as of one inventory. */
struct group_digest {
	uint64_t inv_gen; /* the inventory it was taken of; 0: never */
	uint8_t d[SHA256_DIGEST_LEN];
};

struct compiler {
	struct nodes *nodes;
	int64_t revision;
	struct policy_doc *doc;
	uint64_t policy_gen;
	/* The label groups rules may name (named and inline) and their ids. */
	const struct policy_group **groups;
	struct group_digest *digests;
	size_t n_groups;
	json_t *group_index; /* id → index in groups */
	struct inventory *inv;
	uint64_t inv_gen;
	bool inv_dirty; /* an endpoint list changed: the inventory is built again */
	bool check_due; /* an input changed: which nodes are stale is worked out again */
	uint64_t compilations;
	char *conflicts_said; /* the conflicts last logged, one per line */
	struct ratelimit conflicts_log;
	void (*changed)(void *data);
	void *changed_data;
};

struct compiler *compiler_new(struct nodes *t)
{
	struct compiler *c = xcalloc(1, sizeof(*c));
	c->nodes = t;
	c->conflicts_log = RATELIMIT_INIT(10000, 5);
	c->group_index = json_object();
	c->inv = inventory_new();
	if (!c->inv)
		abort();
	struct diag d;
	diag_init(&d, "inventory");
	if (inventory_finish(c->inv, &d) < 0) /* empty: cannot fail */
		abort();
	diag_release(&d);
	c->inv_gen = 1;
	return c;
}

static void groups_clear(struct compiler *c)
{
	free(c->groups);
	free(c->digests);
	c->groups = NULL;
	c->digests = NULL;
	c->n_groups = 0;
	json_object_clear(c->group_index);
}

void compiler_free(struct compiler *c)
{
	if (!c)
		return;
	groups_clear(c);
	json_decref(c->group_index);
	free(c->conflicts_said);
	inventory_free(c->inv);
	policy_doc_free(c->doc);
	free(c);
}

void compiler_on_change(struct compiler *c, void (*fn)(void *data), void *data)
{
	c->changed = fn;
	c->changed_data = data;
}

static void changed(struct compiler *c)
{
	c->check_due = true;
	if (c->changed)
		c->changed(c->changed_data);
}

static void group_add(struct compiler *c, const struct policy_group *g)
{
	if (g->kind != GROUP_LABEL || json_object_get(c->group_index, g->id))
		return;
	c->groups = xrealloc(c->groups, (c->n_groups + 1) * sizeof(*c->groups));
	c->groups[c->n_groups] = g;
	json_object_set_new(c->group_index, g->id, json_integer((json_int_t)c->n_groups));
	c->n_groups++;
}

/* Every label group a rule of doc may name, by id. */
static void groups_index(struct compiler *c)
{
	groups_clear(c);
	if (!c->doc)
		return;
	for (size_t i = 0; i < c->doc->n_groups; i++)
		group_add(c, c->doc->groups[i]);
	for (size_t i = 0; i < c->doc->n_policies; i++)
		for (enum direction dir = 0; dir < DIR_COUNT; dir++) {
			const struct rule_list *rl = &c->doc->policies[i].rules[dir];
			for (size_t k = 0; rl->present && k < rl->n; k++)
				for (size_t p = 0; p < rl->v[k].n_peers; p++)
					group_add(c, rl->v[k].peers[p]);
		}
	c->digests = xcalloc(c->n_groups ? c->n_groups : 1, sizeof(*c->digests));
}

void compiler_set_policy(struct compiler *c, int64_t revision, struct policy_doc *doc)
{
	policy_doc_free(c->doc);
	c->doc = doc;
	c->revision = revision;
	c->policy_gen++;
	groups_index(c);
	changed(c);
}

int64_t compiler_revision(const struct compiler *c)
{
	return c->revision;
}

const struct policy_doc *compiler_policy(const struct compiler *c)
{
	return c->doc;
}

/* Loads one node's list into inv. 0 or -EINVAL (problems in diag). */
static int load_node(struct inventory *inv, const char *node, json_t *endpoints, struct diag *diag)
{
	json_t *doc = proto_endpoints_inventory(node, endpoints);
	if (!doc)
		abort();
	int r = inventory_load_json(inv, doc, node, INVENTORY_NEED_ADDRESSES, diag);
	json_decref(doc);
	return r;
}

int compiler_set_endpoints(struct compiler *c, const char *node, json_t *endpoints, struct diag *diag)
{
	struct node *n = nodes_find(c->nodes, node);
	if (n && n->endpoints && json_equal(n->endpoints, endpoints))
		return 0;
	/* Check the list on its own first: a bad report must not cost the
	 * node the endpoints it had. */
	struct inventory *check = inventory_new();
	if (!check)
		abort();
	int r = load_node(check, node, endpoints, diag);
	if (r == 0)
		r = inventory_finish(check, diag);
	inventory_free(check);
	if (r < 0)
		return r;
	n = nodes_add(c->nodes, node);
	json_decref(n->endpoints);
	n->endpoints = json_incref(endpoints);
	n->endpoints_gen++;
	c->inv_dirty = true;
	changed(c);
	return 1;
}

bool compiler_forget_node(struct compiler *c, const char *node)
{
	struct node *n = nodes_find(c->nodes, node);
	if (!n || !n->endpoints)
		return false;
	json_decref(n->endpoints);
	n->endpoints = NULL;
	n->endpoints_gen++;
	c->inv_dirty = true;
	changed(c);
	return true;
}

json_t *compiler_endpoints(const struct compiler *c, const char *node)
{
	struct node *n = nodes_find(c->nodes, node);
	return n ? n->endpoints : NULL;
}

/* Logs the address conflicts when they are not the ones logged last. */
static void log_conflicts(struct compiler *c)
{
	char *now = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&now, &len);
	for (size_t i = 0; f && i < c->inv->n_conflicts; i++) {
		char text[1024];
		inventory_conflict_text(&c->inv->conflicts[i], text, sizeof(text));
		fprintf(f, "%s\n", text);
	}
	if (!f || fclose(f) != 0)
		abort();
	/* The nodes' reports decide them: a node that flips its claims at
	 * every report is heard a few times every 10 s. */
	uint64_t missed;
	if ((c->conflicts_said && strcmp(c->conflicts_said, now) == 0) ||
	    !ratelimit_pass(&c->conflicts_log, clock_mono_ms(), &missed)) {
		free(now);
		return;
	}
	if (missed)
		log_info("the address conflicts changed %llu more time(s) (not logged)",
			 (unsigned long long)missed);
	for (const char *line = now, *end; (end = strchr(line, '\n')); line = end + 1)
		log_warn("address conflict: %.*s: %s, until only one endpoint claims it", (int)(end - line),
			 line, INVENTORY_CONFLICT_EFFECT);
	if (!c->inv->n_conflicts && c->conflicts_said && c->conflicts_said[0])
		log_info("no address is claimed twice any more");
	free(c->conflicts_said);
	c->conflicts_said = now;
}

/* Every node's endpoints in one inventory again. */
static void inventory_rebuild(struct compiler *c)
{
	inventory_free(c->inv);
	c->inv = inventory_new();
	if (!c->inv)
		abort();
	for (size_t i = 0; i < nodes_count(c->nodes); i++) {
		struct node *n = nodes_at(c->nodes, i);
		if (!n->endpoints)
			continue;
		struct diag d;
		diag_init(&d, n->name);
		/* Each list was checked when it arrived; this cannot fail
		 * short of memory. */
		if (load_node(c->inv, n->name, n->endpoints, &d) < 0) {
			log_error("node %s: endpoints no longer load:", n->name);
			diag_print(&d, stderr);
		}
		diag_release(&d);
	}
	struct diag d;
	diag_init(&d, "inventory");
	if (inventory_finish(c->inv, &d) < 0) {
		log_error("the nodes' endpoints do not fit together:");
		diag_print(&d, stderr);
	}
	diag_release(&d);
	c->inv_gen++;
	log_conflicts(c);
}

/* The digest of group i's members in the inventory as it is. */
static const uint8_t *group_digest(struct compiler *c, size_t i)
{
	struct group_digest *gd = &c->digests[i];
	if (gd->inv_gen == c->inv_gen)
		return gd->d;
	struct sha256 h;
	sha256_init(&h);
	for (size_t e = 0; e < c->inv->n; e++) {
		const struct endpoint *ep = &c->inv->v[e];
		if (!compile_group_selects(c->groups[i], ep))
			continue;
		for (size_t k = 0; k < ep->n_addrs; k++) {
			uint8_t contested = inventory_addr_conflicted(c->inv, &ep->addrs[k]);
			sha256_update(&h, &ep->addrs[k].family, 1);
			sha256_update(&h, ep->addrs[k].bytes, sizeof(ep->addrs[k].bytes));
			sha256_update(&h, &contested, 1);
		}
	}
	sha256_final(&h, gd->d);
	gd->inv_gen = c->inv_gen;
	return gd->d;
}

/* Whether n's bundle is not what its inputs give now. */
static bool node_stale(struct compiler *c, const struct node *n)
{
	if (!c->doc || !n->endpoints)
		return false; /* no bundle to compile */
	if (!n->bundle || n->compiled_policy_gen != c->policy_gen ||
	    n->compiled_endpoints_gen != n->endpoints_gen)
		return true;
	for (size_t i = 0; i < n->n_deps; i++)
		if (memcmp(group_digest(c, n->deps[i].group), n->deps[i].digest, SHA256_DIGEST_LEN) != 0)
			return true;
	return false;
}

static void node_drop_bundle(struct node *n)
{
	json_decref(n->bundle);
	n->bundle = NULL;
	n->hash[0] = '\0';
	free(n->deps);
	n->deps = NULL;
	n->n_deps = 0;
}

/* Brings the inventory and every node's staleness up to date with the
 * inputs; nothing to do when none changed. */
static void prepare(struct compiler *c)
{
	if (!c->check_due)
		return;
	c->check_due = false;
	if (c->inv_dirty) {
		c->inv_dirty = false;
		inventory_rebuild(c);
	}
	for (size_t i = 0; i < nodes_count(c->nodes); i++) {
		struct node *n = nodes_at(c->nodes, i);
		n->stale = node_stale(c, n);
		/* A stale bundle stays until it is replaced: it is what the
		 * agent may hold, the base of the delta it is sent next. */
		if (!c->doc || !n->endpoints)
			node_drop_bundle(n);
	}
}

/* The label groups n's bundle holds sets of, with their digests now. */
static void node_set_deps(struct compiler *c, struct node *n, const struct bundle *b)
{
	n->deps = xcalloc(b->n_sets ? b->n_sets : 1, sizeof(*n->deps));
	n->n_deps = 0;
	size_t suffix = strlen(BUNDLE_SET_DENY_SUFFIX);
	for (size_t i = 0; i < b->n_sets; i++) {
		const char *id = b->sets[i].id;
		size_t len = strlen(id);
		if (b->sets[i].kind != SET_HOSTS)
			continue;
		if (len > suffix && strcmp(id + len - suffix, BUNDLE_SET_DENY_SUFFIX) == 0)
			len -= suffix;
		char *gid = strndup(id, len);
		if (!gid)
			abort();
		json_t *idx = json_object_get(c->group_index, gid);
		free(gid);
		if (!json_is_integer(idx))
			abort(); /* every label set is a group of the policy */
		size_t g = (size_t)json_integer_value(idx);
		/* GROUP and GROUP#deny are one group: sorted ids, adjacent. */
		if (n->n_deps && n->deps[n->n_deps - 1].group == g)
			continue;
		n->deps[n->n_deps].group = g;
		memcpy(n->deps[n->n_deps].digest, group_digest(c, g), SHA256_DIGEST_LEN);
		n->n_deps++;
	}
}

static void compile_node(struct compiler *c, struct node *n)
{
	node_drop_bundle(n);
	struct bundle *b = compile_bundle(c->doc, c->inv, n->name);
	if (!b)
		abort();
	c->compilations++;
	n->bundle = bundle_to_json(b);
	if (!n->bundle)
		abort();
	memcpy(n->hash, b->hash, sizeof(n->hash));
	node_set_deps(c, n, b);
	bundle_free(b);
	n->compiled_policy_gen = c->policy_gen;
	n->compiled_endpoints_gen = n->endpoints_gen;
	n->stale = false;
}

bool compiler_changed(const struct compiler *c)
{
	return c->check_due;
}

size_t compiler_compile(struct compiler *c, int64_t budget_ms, void (*done)(void *data, struct node *n),
			void *data)
{
	prepare(c);
	int64_t start = clock_mono_ms();
	size_t left = 0;
	bool any = false;
	for (size_t i = 0; i < nodes_count(c->nodes); i++) {
		struct node *n = nodes_at(c->nodes, i);
		if (!n->stale)
			continue;
		if (any && clock_mono_ms() - start >= budget_ms) {
			left++;
			continue;
		}
		compile_node(c, n);
		any = true;
		if (done)
			done(data, n);
	}
	return left;
}

bool compiler_refresh(struct compiler *c)
{
	uint64_t before = c->compilations;
	while (compiler_compile(c, INT64_MAX / 2, NULL, NULL) > 0)
		;
	return c->compilations != before;
}

uint64_t compiler_compilations(const struct compiler *c)
{
	return c->compilations;
}

json_t *compiler_bundle(struct compiler *c, const char *node, const char **hash)
{
	prepare(c);
	struct node *n = nodes_find(c->nodes, node);
	if (!n || n->stale || !n->bundle)
		return NULL;
	if (hash)
		*hash = n->hash;
	return n->bundle;
}

const struct inventory *compiler_inventory(struct compiler *c)
{
	prepare(c);
	return c->inv;
}

json_t *compiler_conflicts(struct compiler *c)
{
	prepare(c);
	json_t *out = json_array();
	for (size_t i = 0; i < c->inv->n_conflicts; i++) {
		const struct addr_conflict *x = &c->inv->conflicts[i];
		char addr[ADDR_STRLEN], a[512], b[512];
		addr_format(&x->addr, addr);
		snprintf(a, sizeof(a), "%s/%s", x->a->node, x->a->name);
		snprintf(b, sizeof(b), "%s/%s", x->b->node, x->b->name);
		json_array_append_new(out, json_pack("{s:s,s:[s,s]}", "address", addr, "endpoints", a, b));
	}
	return out;
}
