/* The controller's policy and endpoints → per-node bundles (see compiler.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/bundle.h"
#include "bulkhead/compile.h"
#include "bulkhead/log.h"
#include "bulkhead/proto.h"
#include "compiler.h"

struct node_view {
	char *name;
	json_t *endpoints; /* as reported, checked */
	json_t *bundle;	   /* compiled, NULL without a policy */
	char hash[BUNDLE_HASH_HEX + 1];
};

struct compiler {
	int64_t revision;
	struct policy_doc *doc;
	struct node_view *nodes; /* sorted by name */
	size_t n_nodes;
	const char **names; /* NULL-terminated, for compiler_nodes */
	struct inventory *inv;
	bool dirty;
	char *conflicts_said; /* the conflicts last logged, one per line */
};

struct compiler *compiler_new(void)
{
	struct compiler *c = xcalloc(1, sizeof(*c));
	c->names = xcalloc(1, sizeof(*c->names));
	return c;
}

void compiler_free(struct compiler *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_nodes; i++) {
		free(c->nodes[i].name);
		json_decref(c->nodes[i].endpoints);
		json_decref(c->nodes[i].bundle);
	}
	free(c->nodes);
	free(c->names);
	free(c->conflicts_said);
	inventory_free(c->inv);
	policy_doc_free(c->doc);
	free(c);
}

void compiler_set_policy(struct compiler *c, int64_t revision, struct policy_doc *doc)
{
	policy_doc_free(c->doc);
	c->doc = doc;
	c->revision = revision;
	c->dirty = true;
}

int64_t compiler_revision(const struct compiler *c)
{
	return c->revision;
}

const struct policy_doc *compiler_policy(const struct compiler *c)
{
	return c->doc;
}

/* Where node is in the sorted nodes, or would go. */
static size_t node_position(const struct compiler *c, const char *node)
{
	size_t lo = 0, hi = c->n_nodes;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(c->nodes[mid].name, node) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct node_view *find_node(const struct compiler *c, const char *node)
{
	size_t i = node_position(c, node);
	return i < c->n_nodes && strcmp(c->nodes[i].name, node) == 0 ? &c->nodes[i] : NULL;
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

/* c->names from c->nodes, after the list changed. */
static void names_update(struct compiler *c)
{
	c->names = realloc(c->names, (c->n_nodes + 1) * sizeof(*c->names));
	if (!c->names)
		abort();
	for (size_t i = 0; i < c->n_nodes; i++)
		c->names[i] = c->nodes[i].name;
	c->names[c->n_nodes] = NULL;
}

int compiler_set_endpoints(struct compiler *c, const char *node, json_t *endpoints, struct diag *diag)
{
	struct node_view *nv = find_node(c, node);
	if (nv && json_equal(nv->endpoints, endpoints))
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

	if (!nv) {
		size_t at = node_position(c, node);
		c->nodes = realloc(c->nodes, (c->n_nodes + 1) * sizeof(*c->nodes));
		if (!c->nodes)
			abort();
		memmove(&c->nodes[at + 1], &c->nodes[at], (c->n_nodes - at) * sizeof(*c->nodes));
		c->nodes[at] = (struct node_view){.name = xstrdup(node)};
		c->n_nodes++;
		names_update(c);
		nv = &c->nodes[at];
	}
	json_decref(nv->endpoints);
	nv->endpoints = json_incref(endpoints);
	c->dirty = true;
	return 1;
}

bool compiler_forget_node(struct compiler *c, const char *node)
{
	struct node_view *nv = find_node(c, node);
	if (!nv)
		return false;
	free(nv->name);
	json_decref(nv->endpoints);
	json_decref(nv->bundle);
	size_t i = (size_t)(nv - c->nodes);
	memmove(nv, nv + 1, (c->n_nodes - i - 1) * sizeof(*nv));
	c->n_nodes--;
	names_update(c);
	c->dirty = true;
	return true;
}

json_t *compiler_endpoints(const struct compiler *c, const char *node)
{
	struct node_view *nv = find_node(c, node);
	return nv ? nv->endpoints : NULL;
}

const char *const *compiler_nodes(const struct compiler *c)
{
	return c->names;
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
	if (c->conflicts_said && strcmp(c->conflicts_said, now) == 0) {
		free(now);
		return;
	}
	for (const char *line = now, *end; (end = strchr(line, '\n')); line = end + 1)
		log_warn("address conflict: %.*s: %s, until only one endpoint claims it", (int)(end - line), line,
			 INVENTORY_CONFLICT_EFFECT);
	if (!c->inv->n_conflicts && c->conflicts_said && c->conflicts_said[0])
		log_info("no address is claimed twice any more");
	free(c->conflicts_said);
	c->conflicts_said = now;
}

json_t *compiler_conflicts(const struct compiler *c)
{
	json_t *out = json_array();
	for (size_t i = 0; c->inv && i < c->inv->n_conflicts; i++) {
		const struct addr_conflict *x = &c->inv->conflicts[i];
		char addr[ADDR_STRLEN], a[512], b[512];
		addr_format(&x->addr, addr);
		snprintf(a, sizeof(a), "%s/%s", x->a->node, x->a->name);
		snprintf(b, sizeof(b), "%s/%s", x->b->node, x->b->name);
		json_array_append_new(out, json_pack("{s:s,s:[s,s]}", "address", addr, "endpoints", a, b));
	}
	return out;
}

bool compiler_refresh(struct compiler *c)
{
	if (!c->dirty)
		return false;
	c->dirty = false;
	inventory_free(c->inv);
	c->inv = inventory_new();
	if (!c->inv)
		abort();
	for (size_t i = 0; i < c->n_nodes; i++) {
		struct diag d;
		diag_init(&d, c->nodes[i].name);
		/* Each list was checked when it arrived; this cannot fail
		 * short of memory. */
		if (load_node(c->inv, c->nodes[i].name, c->nodes[i].endpoints, &d) < 0) {
			log_error("node %s: endpoints no longer load:", c->nodes[i].name);
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
	log_conflicts(c);

	for (size_t i = 0; i < c->n_nodes; i++) {
		struct node_view *nv = &c->nodes[i];
		json_decref(nv->bundle);
		nv->bundle = NULL;
		nv->hash[0] = '\0';
		if (!c->doc)
			continue;
		struct bundle *b = compile_bundle(c->doc, c->inv, nv->name);
		if (!b)
			abort();
		nv->bundle = bundle_to_json(b);
		if (!nv->bundle)
			abort();
		memcpy(nv->hash, b->hash, sizeof(nv->hash));
		bundle_free(b);
	}
	return true;
}

json_t *compiler_bundle(const struct compiler *c, const char *node, const char **hash)
{
	struct node_view *nv = find_node(c, node);
	if (!nv || !nv->bundle)
		return NULL;
	if (hash)
		*hash = nv->hash;
	return nv->bundle;
}

const struct inventory *compiler_inventory(const struct compiler *c)
{
	return c->inv;
}
