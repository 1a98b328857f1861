/* The controller's policy and endpoints → per-node bundles, each node
 * recompiled only when its inputs change (see compiler.h).
 *
 * Which nodes are stale is worked out lazily (prepare): after endpoints
 * changed the inventory is built again, and every node is held against
 * its inputs — the policy's generation, its list's, and the digest of each
 * label group and named port it depends on. A group's digest covers its
 * members' addresses in inventory order with whether each is contested,
 * which is all compile_bundle() reads of the group: equal digests, equal
 * sets. A named port's (proto/name, which an egress rule names) covers the
 * same of every endpoint that defines it, with its number: equal digests,
 * equal tables.
 *
 * With a worker, each stale node is a job that compiles it from the policy
 * and the inventory of the moment it was queued (both kept whole until it
 * is done); its result is taken when it is still right — the same policy,
 * the same list of the node's, the same members in every group its bundle
 * holds — whatever else changed meanwhile, so one node's changing
 * endpoints never keep the others from their bundles. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/bundle.h"
#include "bulkhead/compile.h"
#include "bulkhead/log.h"
#include "bulkhead/proto.h"
#include "bulkhead/ratelimit.h"
#include "bulkhead/worker.h"
#include "compiler.h"

/* A policy with the label groups its rules may name (named and inline),
 * by id, or an inventory: what compile jobs read, kept whole until the last
 * one that reads it is done, also when the compiler has moved on. Counted
 * on the loop's thread only; read-only once made. */
struct shared {
	unsigned refs;
	struct policy_doc *doc;
	const struct policy_group **groups;
	size_t n_groups;
	json_t *index; /* id → index in groups */
	/* The named ports egress rules name (a bundle's tables), dependencies
	 * n_groups + i. */
	const struct port_match **names;
	size_t n_names;
	json_t *name_index; /* "tcp/http" → index in names */
	struct inventory *inv;
};

static void shared_add_name(struct shared *sh, const struct port_match *m)
{
	char key[BUNDLE_NAMED_ID_MAX];
	snprintf(key, sizeof(key), "%s/%s", proto_name(m->proto), m->name);
	if (json_object_get(sh->name_index, key))
		return;
	sh->names = xrealloc(sh->names, (sh->n_names + 1) * sizeof(*sh->names));
	sh->names[sh->n_names] = m;
	json_object_set_new(sh->name_index, key, json_integer((json_int_t)sh->n_names));
	sh->n_names++;
}

static void shared_add_group(struct shared *sh, const struct policy_group *g)
{
	if (g->kind != GROUP_LABEL || json_object_get(sh->index, g->id))
		return;
	sh->groups = xrealloc(sh->groups, (sh->n_groups + 1) * sizeof(*sh->groups));
	sh->groups[sh->n_groups] = g;
	json_object_set_new(sh->index, g->id, json_integer((json_int_t)sh->n_groups));
	sh->n_groups++;
}

static struct shared *shared_doc(struct policy_doc *doc)
{
	struct shared *sh = xcalloc(1, sizeof(*sh));
	sh->refs = 1;
	sh->doc = doc;
	sh->index = json_object();
	sh->name_index = json_object();
	for (size_t i = 0; i < doc->n_groups; i++)
		shared_add_group(sh, doc->groups[i]);
	for (size_t i = 0; i < doc->n_policies; i++)
		for (enum direction dir = 0; dir < DIR_COUNT; dir++) {
			const struct rule_list *rl = &doc->policies[i].rules[dir];
			for (size_t k = 0; rl->present && k < rl->n; k++) {
				for (size_t p = 0; p < rl->v[k].n_peers; p++)
					shared_add_group(sh, rl->v[k].peers[p]);
				for (size_t p = 0; dir == DIR_EGRESS && p < rl->v[k].n_ports; p++)
					if (rl->v[k].ports[p].name)
						shared_add_name(sh, &rl->v[k].ports[p]);
			}
		}
	return sh;
}

static struct shared *shared_inv(struct inventory *inv)
{
	struct shared *sh = xcalloc(1, sizeof(*sh));
	sh->refs = 1;
	sh->inv = inv;
	return sh;
}

static struct shared *shared_ref(struct shared *sh)
{
	if (sh)
		sh->refs++;
	return sh;
}

static void shared_drop(struct shared *sh)
{
	if (!sh || --sh->refs)
		return;
	policy_doc_free(sh->doc);
	free(sh->groups);
	json_decref(sh->index);
	free(sh->names);
	json_decref(sh->name_index);
	inventory_free(sh->inv);
	free(sh);
}

/* A label group's members, as of one inventory. */
struct group_digest {
	uint64_t inv_gen; /* the inventory it was taken of; 0: never */
	uint8_t d[SHA256_DIGEST_LEN];
};

struct compiler {
	struct nodes *nodes;
	int64_t revision;
	struct shared *doc; /* NULL: no policy */
	uint64_t policy_gen;
	struct group_digest *digests; /* one a group of doc, then one a name */
	struct shared *inv;
	uint64_t inv_gen;
	uint64_t lists;			   /* endpoint lists taken: each node's endpoints_gen is unique */
	bool inv_dirty;			   /* an endpoint list changed: the inventory is built again */
	bool check_due;			   /* an input changed: which nodes are stale is worked out again */
	atomic_uint_fast64_t compilations; /* build() calls, on either thread */
	char *conflicts_said;		   /* the conflicts last logged, one per line */
	struct ratelimit conflicts_log;
	void (*changed)(void *data);
	void *changed_data;
	/* Compiling off the loop: where, and whom to tell. */
	struct worker *worker;
	void (*done)(void *data, struct node *n);
	void *done_data;
};

static struct inventory *inventory_empty(void)
{
	struct inventory *inv = inventory_new();
	struct diag d;
	diag_init(&d, "inventory");
	if (!inv || inventory_finish(inv, &d) < 0) /* empty: cannot fail */
		abort();
	diag_release(&d);
	return inv;
}

struct compiler *compiler_new(struct nodes *t)
{
	struct compiler *c = xcalloc(1, sizeof(*c));
	c->nodes = t;
	c->conflicts_log = RATELIMIT_INIT(10000, 5);
	c->inv = shared_inv(inventory_empty());
	c->inv_gen = 1;
	return c;
}

void compiler_free(struct compiler *c)
{
	if (!c)
		return;
	free(c->digests);
	free(c->conflicts_said);
	shared_drop(c->inv);
	shared_drop(c->doc);
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

void compiler_set_policy(struct compiler *c, int64_t revision, struct policy_doc *doc)
{
	shared_drop(c->doc);
	c->doc = doc ? shared_doc(doc) : NULL;
	c->revision = revision;
	c->policy_gen++;
	free(c->digests);
	c->digests = c->doc ? xcalloc(c->doc->n_groups + c->doc->n_names + 1, sizeof(*c->digests)) : NULL;
	changed(c);
}

int64_t compiler_revision(const struct compiler *c)
{
	return c->revision;
}

const struct policy_doc *compiler_policy(const struct compiler *c)
{
	return c->doc ? c->doc->doc : NULL;
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
	n->endpoints_gen = ++c->lists;
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
	n->endpoints_gen = ++c->lists;
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
	const struct inventory *inv = c->inv->inv;
	char *now = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&now, &len);
	for (size_t i = 0; f && i < inv->n_conflicts; i++) {
		char text[1024];
		inventory_conflict_text(&inv->conflicts[i], text, sizeof(text));
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
	if (!inv->n_conflicts && c->conflicts_said && c->conflicts_said[0])
		log_info("no address is claimed twice any more");
	free(c->conflicts_said);
	c->conflicts_said = now;
}

/* Every node's endpoints in one inventory again. */
static void inventory_rebuild(struct compiler *c)
{
	struct inventory *inv = inventory_new();
	if (!inv)
		abort();
	for (size_t i = 0; i < nodes_count(c->nodes); i++) {
		struct node *n = nodes_at(c->nodes, i);
		if (!n->endpoints)
			continue;
		struct diag d;
		diag_init(&d, n->name);
		/* Each list was checked when it arrived; this cannot fail
		 * short of memory. */
		if (load_node(inv, n->name, n->endpoints, &d) < 0) {
			log_error("node %s: endpoints no longer load:", n->name);
			diag_print(&d, stderr);
		}
		diag_release(&d);
	}
	struct diag d;
	diag_init(&d, "inventory");
	if (inventory_finish(inv, &d) < 0) {
		log_error("the nodes' endpoints do not fit together:");
		diag_print(&d, stderr);
	}
	diag_release(&d);
	shared_drop(c->inv);
	c->inv = shared_inv(inv);
	c->inv_gen++;
	log_conflicts(c);
}

/* The digest of g's members in inv. Pure: any thread. */
static void digest_of(const struct policy_group *g, const struct inventory *inv,
		      uint8_t out[SHA256_DIGEST_LEN])
{
	struct sha256 h;
	sha256_init(&h);
	for (size_t e = 0; e < inv->n; e++) {
		const struct endpoint *ep = &inv->v[e];
		if (!compile_group_selects(g, ep))
			continue;
		for (size_t k = 0; k < ep->n_addrs; k++) {
			uint8_t contested = inventory_addr_conflicted(inv, &ep->addrs[k]);
			sha256_update(&h, &ep->addrs[k].family, 1);
			sha256_update(&h, ep->addrs[k].bytes, sizeof(ep->addrs[k].bytes));
			sha256_update(&h, &contested, 1);
		}
	}
	sha256_final(&h, out);
}

/* The digest of what every endpoint in inv numbers proto/name (m), which
 * is all compile_bundle() reads for its tables. Pure: any thread. */
static void named_digest_of(const struct port_match *m, const struct inventory *inv,
			    uint8_t out[SHA256_DIGEST_LEN])
{
	struct sha256 h;
	sha256_init(&h);
	for (size_t e = 0; e < inv->n; e++) {
		const struct endpoint *ep = &inv->v[e];
		const struct endpoint_port *port = inventory_port_of(ep, m->name);
		if (!port || port->proto != m->proto)
			continue;
		uint8_t number[2] = {(uint8_t)(port->port >> 8), (uint8_t)port->port};
		for (size_t k = 0; k < ep->n_addrs; k++) {
			uint8_t contested = inventory_addr_conflicted(inv, &ep->addrs[k]);
			sha256_update(&h, &ep->addrs[k].family, 1);
			sha256_update(&h, ep->addrs[k].bytes, sizeof(ep->addrs[k].bytes));
			sha256_update(&h, &contested, 1);
			sha256_update(&h, number, sizeof(number));
		}
	}
	sha256_final(&h, out);
}

/* Dependency i of doc: a label group, or a named port past them. */
static void dep_digest_of(const struct shared *doc, size_t i, const struct inventory *inv,
			  uint8_t out[SHA256_DIGEST_LEN])
{
	if (i < doc->n_groups)
		digest_of(doc->groups[i], inv, out);
	else
		named_digest_of(doc->names[i - doc->n_groups], inv, out);
}

/* The digest of dependency i of the policy in force in the inventory as
 * it is (kept until the inventory changes). */
static const uint8_t *group_digest(struct compiler *c, size_t i)
{
	struct group_digest *gd = &c->digests[i];
	if (gd->inv_gen != c->inv_gen) {
		dep_digest_of(c->doc, i, c->inv->inv, gd->d);
		gd->inv_gen = c->inv_gen;
	}
	return gd->d;
}

/* Whether deps hold the members their groups have now. */
static bool deps_current(struct compiler *c, const struct node_dep *deps, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(group_digest(c, deps[i].group), deps[i].digest, SHA256_DIGEST_LEN) != 0)
			return false;
	return true;
}

/* Whether n's bundle is not what its inputs give now. */
static bool node_stale(struct compiler *c, const struct node *n)
{
	if (!c->doc || !n->endpoints)
		return false; /* no bundle to compile */
	return !n->bundle || n->compiled_policy_gen != c->policy_gen ||
	       n->compiled_endpoints_gen != n->endpoints_gen || !deps_current(c, n->deps, n->n_deps);
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

/* What compiling a node gives: the slow part, pure (any thread). */
struct result {
	json_t *bundle;
	char hash[BUNDLE_HASH_HEX + 1];
	struct node_dep *deps; /* the label groups it holds sets of, with their members' digests */
	size_t n_deps;
};

static void build(struct compiler *c, const struct shared *doc, const struct inventory *inv, const char *node,
		  struct result *r)
{
	atomic_fetch_add(&c->compilations, 1);
	struct bundle *b = compile_bundle(doc->doc, inv, node);
	if (!b || !(r->bundle = bundle_to_json(b)))
		abort();
	memcpy(r->hash, b->hash, sizeof(r->hash));
	r->deps = xcalloc(b->n_sets + b->n_named_ports + 1, sizeof(*r->deps));
	r->n_deps = 0;
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
		json_t *idx = json_object_get(doc->index, gid);
		free(gid);
		if (!json_is_integer(idx))
			abort(); /* every label set is a group of the policy */
		size_t g = (size_t)json_integer_value(idx);
		/* GROUP and GROUP#deny are one group, adjacent in id order. */
		if (r->n_deps && r->deps[r->n_deps - 1].group == g)
			continue;
		r->deps[r->n_deps].group = g;
		digest_of(doc->groups[g], inv, r->deps[r->n_deps].digest);
		r->n_deps++;
	}
	/* Its named-port tables: proto/name and proto/name#deny are one
	 * dependency, adjacent in id order ('#' sorts before a name's
	 * characters). */
	for (size_t i = 0; i < b->n_named_ports; i++) {
		char key[BUNDLE_NAMED_ID_MAX];
		snprintf(key, sizeof(key), "%s/%s", proto_name(b->named_ports[i].proto),
			 b->named_ports[i].name);
		json_t *idx = json_object_get(doc->name_index, key);
		if (!json_is_integer(idx))
			abort(); /* every table is a name the policy's egress rules use */
		size_t dep = doc->n_groups + (size_t)json_integer_value(idx);
		if (r->n_deps && r->deps[r->n_deps - 1].group == dep)
			continue;
		r->deps[r->n_deps].group = dep;
		dep_digest_of(doc, dep, inv, r->deps[r->n_deps].digest);
		r->n_deps++;
	}
	bundle_free(b);
}

/* r is n's bundle from now on (takes what it holds). */
static void install(struct compiler *c, struct node *n, struct result *r)
{
	node_drop_bundle(n);
	n->bundle = r->bundle;
	memcpy(n->hash, r->hash, sizeof(n->hash));
	n->deps = r->deps;
	n->n_deps = r->n_deps;
	n->compiled_policy_gen = c->policy_gen;
	n->compiled_endpoints_gen = n->endpoints_gen;
	n->stale = false;
	*r = (struct result){0};
}

static void compile_node(struct compiler *c, struct node *n)
{
	struct result r;
	build(c, c->doc, c->inv->inv, n->name, &r);
	install(c, n, &r);
}

/* ---- off the loop ---- */

struct job {
	struct worker_job job;
	struct compiler *c;
	char *node;
	struct shared *doc, *inv; /* what it reads */
	uint64_t policy_gen, endpoints_gen;
	struct result r; /* what it made */
};

static void job_run(struct worker_job *wj)
{
	struct job *j = (struct job *)wj;
	build(j->c, j->doc, j->inv->inv, j->node, &j->r);
}

static void submit(struct compiler *c, struct node *n);

static void job_done(struct worker_job *wj, bool cancelled)
{
	struct job *j = (struct job *)wj;
	struct compiler *c = j->c;
	struct node *n = cancelled ? NULL : nodes_find(c->nodes, j->node);
	if (n) {
		n->compiling = false;
		prepare(c);
		/* Still right for the node: its bundle. Else its inputs changed
		 * meanwhile: once more. */
		if (n->stale && j->policy_gen == c->policy_gen && j->endpoints_gen == n->endpoints_gen &&
		    deps_current(c, j->r.deps, j->r.n_deps)) {
			install(c, n, &j->r);
			if (c->done)
				c->done(c->done_data, n);
		} else if (n->stale) {
			submit(c, n);
		}
	}
	shared_drop(j->doc);
	shared_drop(j->inv);
	json_decref(j->r.bundle);
	free(j->r.deps);
	free(j->node);
	free(j);
}

/* Queues n; right after prepare(): the inventory holds its list. */
static void submit(struct compiler *c, struct node *n)
{
	struct job *j = xcalloc(1, sizeof(*j));
	j->job = (struct worker_job){.run = job_run, .done = job_done};
	j->c = c;
	j->node = xstrdup(n->name);
	j->doc = shared_ref(c->doc);
	j->inv = shared_ref(c->inv);
	j->policy_gen = c->policy_gen;
	j->endpoints_gen = n->endpoints_gen;
	n->compiling = true;
	worker_submit(c->worker, &j->job);
}

void compiler_use_worker(struct compiler *c, struct worker *w)
{
	c->worker = w;
}

bool compiler_changed(const struct compiler *c)
{
	return c->check_due;
}

size_t compiler_compile(struct compiler *c, int64_t budget_ms, void (*done)(void *data, struct node *n),
			void *data)
{
	prepare(c);
	if (c->worker) {
		c->done = done;
		c->done_data = data;
		for (size_t i = 0; i < nodes_count(c->nodes); i++) {
			struct node *n = nodes_at(c->nodes, i);
			if (n->stale && !n->compiling)
				submit(c, n);
		}
		return 0;
	}
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
	uint64_t before = atomic_load(&c->compilations);
	prepare(c);
	for (size_t i = 0; i < nodes_count(c->nodes); i++) {
		struct node *n = nodes_at(c->nodes, i);
		if (n->stale)
			compile_node(c, n);
	}
	return atomic_load(&c->compilations) != before;
}

uint64_t compiler_compilations(struct compiler *c)
{
	return atomic_load(&c->compilations);
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
	return c->inv->inv;
}

/* A hold is the inventory's shared reference itself. */
struct compiler_hold *compiler_inventory_hold(struct compiler *c, const struct inventory **inv)
{
	prepare(c);
	*inv = c->inv->inv;
	return (struct compiler_hold *)shared_ref(c->inv);
}

void compiler_inventory_release(struct compiler_hold *h)
{
	shared_drop((struct shared *)h);
}

json_t *compiler_conflicts(struct compiler *c)
{
	prepare(c);
	const struct inventory *inv = c->inv->inv;
	json_t *out = json_array();
	for (size_t i = 0; i < inv->n_conflicts; i++) {
		const struct addr_conflict *x = &inv->conflicts[i];
		char addr[ADDR_STRLEN], a[512], b[512];
		addr_format(&x->addr, addr);
		snprintf(a, sizeof(a), "%s/%s", x->a->node, x->a->name);
		snprintf(b, sizeof(b), "%s/%s", x->b->node, x->b->name);
		json_array_append_new(out, json_pack("{s:s,s:[s,s]}", "address", addr, "endpoints", a, b));
	}
	return out;
}
