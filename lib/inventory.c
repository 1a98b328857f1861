/* Inventory files: the endpoints of a node (DESIGN §3). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/arena.h"
#include "bulkhead/inventory.h"
#include "json_util.h"

#define NODE_NAME_MAX  253 /* a host name */
#define NETNS_PATH_MAX 4095

bool inventory_node_name_valid(const char *node)
{
	return name_valid(node, NODE_NAME_MAX);
}

/* A path as the kernel takes it, and printable: a netns path is shown and
 * logged. */
static bool netns_path_valid(const char *s)
{
	if (s[0] != '/' || strlen(s) > NETNS_PATH_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

struct inventory *inventory_new(void)
{
	struct inventory *inv = calloc(1, sizeof(*inv));
	if (!inv)
		return NULL;
	inv->arena = arena_new();
	if (!inv->arena) {
		free(inv);
		return NULL;
	}
	return inv;
}

void inventory_free(struct inventory *inv)
{
	if (!inv)
		return;
	free(inv->claims);
	free(inv->v);
	arena_free(inv->arena);
	free(inv);
}

static int addr_sort_cmp(const void *a, const void *b)
{
	return addr_cmp(a, b);
}

static void parse_addresses(struct json_walk *w, json_t *arr, struct endpoint *ep)
{
	if (!walk_expect_type(w, arr, JSON_ARRAY))
		return;
	size_t n = json_array_size(arr);
	ep->addrs = arena_calloc(w->arena, n ? n : 1, sizeof(*ep->addrs));
	if (!ep->addrs) {
		w->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		size_t mark = jpath_push_index(&w->path, i);
		json_t *item = json_array_get(arr, i);
		if (walk_expect_type(w, item, JSON_STRING) &&
		    addr_parse(json_string_value(item), &ep->addrs[ep->n_addrs]) < 0)
			walk_error(w, "\"%s\": not an IPv4 or IPv6 address", json_string_value(item));
		else if (json_is_string(item))
			ep->n_addrs++;
		jpath_pop(&w->path, mark);
	}
	qsort(ep->addrs, ep->n_addrs, sizeof(*ep->addrs), addr_sort_cmp);
	size_t u = 0;
	for (size_t i = 0; i < ep->n_addrs; i++) {
		if (u == 0 || addr_cmp(&ep->addrs[u - 1], &ep->addrs[i]) != 0)
			ep->addrs[u++] = ep->addrs[i];
	}
	ep->n_addrs = u;
}

bool inventory_endpoint_name_valid(const char *name)
{
	return name_valid(name, NAME_MAX_LEN);
}

static int port_cmp(const void *a, const void *b)
{
	return strcmp(((const struct endpoint_port *)a)->name, ((const struct endpoint_port *)b)->name);
}

/* "ports": {"http": "tcp/8080"}: named ports, as container engines give
 * them (bulkhead.io/port.NAME labels) and the agent reports them. */
static void parse_ports(struct json_walk *w, json_t *obj, struct endpoint *ep)
{
	if (!walk_expect_type(w, obj, JSON_OBJECT))
		return;
	size_t n = json_object_size(obj);
	ep->ports = arena_calloc(w->arena, n ? n : 1, sizeof(*ep->ports));
	if (!ep->ports) {
		w->oom = true;
		return;
	}
	const char *key;
	json_t *v;
	json_object_foreach (obj, key, v) {
		size_t mark = jpath_push_key(&w->path, key);
		const char *why, *value = walk_take_string(w, v);
		struct endpoint_port *p = &ep->ports[ep->n_ports];
		if (!named_port_name_valid(key, &why))
			walk_error(w, "invalid port name \"%s\": %s", key, why);
		else if (value && named_port_parse(value, &p->proto, &p->port, &why) < 0)
			walk_error(w, "\"%s\": %s", value, why);
		else if (value && !(p->name = arena_strdup(w->arena, key)))
			w->oom = true;
		else if (value)
			ep->n_ports++;
		jpath_pop(&w->path, mark);
	}
	qsort(ep->ports, ep->n_ports, sizeof(*ep->ports), port_cmp);
}

const struct endpoint_port *inventory_port_of(const struct endpoint *ep, const char *name)
{
	size_t lo = 0, hi = ep->n_ports;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, ep->ports[mid].name);
		if (c == 0)
			return &ep->ports[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static void parse_endpoint(struct json_walk *w, json_t *obj, const char *node, unsigned flags,
			   struct endpoint *ep)
{
	static const char *const keys[] = {"name", "netns", "labels", "addresses", "ports", NULL};
	if (!walk_expect_type(w, obj, JSON_OBJECT))
		return;
	walk_check_keys(w, obj, keys, NULL);
	ep->node = node;

	json_t *v = json_object_get(obj, "name");
	size_t mark = jpath_push_key(&w->path, "name");
	if (!v)
		walk_error(w, "missing required key");
	else if ((ep->name = walk_take_string(w, v)) && !name_valid(ep->name, NAME_MAX_LEN))
		walk_error(w,
			   "invalid endpoint name \"%s\": use 1-%d letters, digits, '.', '_' or '-', "
			   "beginning with a letter or digit",
			   ep->name, NAME_MAX_LEN);
	jpath_pop(&w->path, mark);

	if ((v = json_object_get(obj, "netns"))) {
		mark = jpath_push_key(&w->path, "netns");
		if ((ep->netns = walk_take_string(w, v)) && !netns_path_valid(ep->netns))
			walk_error(w,
				   "\"%s\": expected an absolute path (e.g. /run/netns/NAME) of printable "
				   "characters, "
				   "at most %d",
				   ep->netns, NETNS_PATH_MAX);
		jpath_pop(&w->path, mark);
	}

	if ((v = json_object_get(obj, "labels"))) {
		mark = jpath_push_key(&w->path, "labels");
		walk_labels(w, v, &ep->labels);
		jpath_pop(&w->path, mark);
	}

	if ((v = json_object_get(obj, "ports"))) {
		mark = jpath_push_key(&w->path, "ports");
		parse_ports(w, v, ep);
		jpath_pop(&w->path, mark);
	}

	v = json_object_get(obj, "addresses");
	mark = jpath_push_key(&w->path, "addresses");
	if (v)
		parse_addresses(w, v, ep);
	else if (flags & INVENTORY_NEED_ADDRESSES)
		walk_error(w, "missing required key");
	jpath_pop(&w->path, mark);
}

int inventory_load_json(struct inventory *inv, json_t *root, const char *node_override, unsigned flags,
			struct diag *diag)
{
	static const char *const keys[] = {"node", "endpoints", NULL};
	struct json_walk w;
	size_t errors = diag->n;
	walk_init(&w, inv->arena, diag);

	if (!walk_expect_type(&w, root, JSON_OBJECT))
		return -EINVAL;
	walk_check_keys(&w, root, keys, NULL);

	const char *node = NULL;
	json_t *v = json_object_get(root, "node");
	size_t mark = jpath_push_key(&w.path, "node");
	if (v) {
		if ((node = walk_take_string(&w, v)) && !inventory_node_name_valid(node))
			walk_error(&w, "invalid node name \"%s\": " INVENTORY_NODE_NAME_RULE, node);
		if (node && node_override && strcmp(node, node_override) != 0)
			walk_error(&w, "inventory is for node \"%s\", not \"%s\"", node, node_override);
	} else if (node_override) {
		node = arena_strdup(inv->arena, node_override);
	} else {
		walk_error(&w, "missing required key: which node these endpoints are on");
	}
	jpath_pop(&w.path, mark);

	v = json_object_get(root, "endpoints");
	mark = jpath_push_key(&w.path, "endpoints");
	size_t n = 0;
	struct endpoint *eps = NULL;
	if (!v) {
		walk_error(&w, "missing required key");
	} else if (walk_expect_type(&w, v, JSON_ARRAY)) {
		n = json_array_size(v);
		eps = calloc(n ? n : 1, sizeof(*eps));
		if (!eps)
			w.oom = true;
		for (size_t i = 0; eps && i < n; i++) {
			size_t m2 = jpath_push_index(&w.path, i);
			parse_endpoint(&w, json_array_get(v, i), node, flags, &eps[i]);
			jpath_pop(&w.path, m2);
		}
	}
	jpath_pop(&w.path, mark);
	if (w.oom)
		diag_add(diag, "", "out of memory");
	if (diag->n != errors || !eps) {
		free(eps);
		return w.oom ? -ENOMEM : -EINVAL;
	}

	/* The claims point into v, which may move. */
	free(inv->claims);
	inv->claims = NULL;
	inv->n_claims = 0;
	inv->finished = false;
	if (inv->n + n > inv->cap) {
		size_t cap = inv->cap ? inv->cap : 16;
		while (cap < inv->n + n)
			cap *= 2;
		struct endpoint *grown = realloc(inv->v, cap * sizeof(*grown));
		if (!grown) {
			free(eps);
			diag_add(diag, "", "out of memory");
			return -ENOMEM;
		}
		inv->v = grown;
		inv->cap = cap;
	}
	if (n) /* a node with no endpoints: inv->v may still be NULL */
		memcpy(inv->v + inv->n, eps, n * sizeof(*eps));
	inv->n += n;
	free(eps);
	return 0;
}

int inventory_load_file(struct inventory *inv, const char *path, const char *node_override, unsigned flags,
			struct diag *diag)
{
	json_t *root = json_util_load_file(path, INVENTORY_MAX_BYTES, "an inventory", diag);
	if (!root)
		return -EINVAL;
	int r = inventory_load_json(inv, root, node_override, flags, diag);
	json_decref(root);
	return r;
}

static int endpoint_cmp(const void *a, const void *b)
{
	const struct endpoint *x = a, *y = b;
	int c = strcmp(x->node, y->node);
	return c ? c : strcmp(x->name, y->name);
}

static int claim_cmp(const void *a, const void *b)
{
	const struct addr_claim *x = a, *y = b;
	int c = addr_cmp(&x->addr, &y->addr);
	return c ? c : (x->ep > y->ep) - (x->ep < y->ep); /* the endpoints are in (node, name) order */
}

/* Whether c[i] is the second claim of an address (sorted claims). */
static bool second_claim(const struct addr_claim *c, size_t i)
{
	return addr_cmp(&c[i - 1].addr, &c[i].addr) == 0 &&
	       (i < 2 || addr_cmp(&c[i - 2].addr, &c[i].addr) != 0);
}

/* Every claim, sorted; then every address with two or more claimants,
 * once, sorted. */
static int find_conflicts(struct inventory *inv)
{
	size_t n = 0;
	for (size_t i = 0; i < inv->n; i++)
		n += inv->v[i].n_addrs;
	inv->conflicts = NULL;
	inv->n_conflicts = 0;
	free(inv->claims);
	inv->claims = NULL;
	inv->n_claims = 0;
	if (n == 0)
		return 0;
	struct addr_claim *c = malloc(n * sizeof(*c));
	if (!c)
		return -ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < inv->n; i++)
		for (size_t j = 0; j < inv->v[i].n_addrs; j++)
			c[k++] = (struct addr_claim){inv->v[i].addrs[j], &inv->v[i]};
	qsort(c, n, sizeof(*c), claim_cmp);
	size_t n_conf = 0;
	for (size_t i = 1; i < n; i++)
		n_conf += second_claim(c, i);
	if (n_conf) {
		inv->conflicts = arena_calloc(inv->arena, n_conf, sizeof(*inv->conflicts));
		if (!inv->conflicts) {
			free(c);
			return -ENOMEM;
		}
		for (size_t i = 1; i < n; i++) {
			if (second_claim(c, i))
				inv->conflicts[inv->n_conflicts++] =
				    (struct addr_conflict){c[i].addr, c[i - 1].ep, c[i].ep};
		}
	}
	inv->claims = c;
	inv->n_claims = n;
	return 0;
}

int inventory_finish(struct inventory *inv, struct diag *diag)
{
	if (inv->n)
		qsort(inv->v, inv->n, sizeof(*inv->v), endpoint_cmp);
	int r = 0;
	for (size_t i = 1; i < inv->n; i++) {
		if (endpoint_cmp(&inv->v[i - 1], &inv->v[i]) == 0) {
			diag_add(diag, "", "endpoint %s/%s is listed more than once", inv->v[i].node,
				 inv->v[i].name);
			r = -EINVAL;
		}
	}
	if (r == 0)
		r = find_conflicts(inv);
	inv->finished = r == 0;
	return r;
}

static int conflict_key_cmp(const void *key, const void *elem)
{
	return addr_cmp(key, &((const struct addr_conflict *)elem)->addr);
}

void inventory_conflict_text(const struct addr_conflict *c, char *buf, size_t size)
{
	char addr[ADDR_STRLEN];
	addr_format(&c->addr, addr);
	snprintf(buf, size, "%s is claimed by %s/%s and %s/%s", addr, c->a->node, c->a->name, c->b->node,
		 c->b->name);
}

const struct addr_conflict *inventory_conflict_of(const struct inventory *inv, const struct bh_addr *a)
{
	return inv->n_conflicts
		   ? bsearch(a, inv->conflicts, inv->n_conflicts, sizeof(*inv->conflicts), conflict_key_cmp)
		   : NULL;
}

bool inventory_addr_conflicted(const struct inventory *inv, const struct bh_addr *a)
{
	return inventory_conflict_of(inv, a) != NULL;
}

const char **inventory_nodes(const struct inventory *inv)
{
	const char **nodes = arena_calloc(inv->arena, inv->n + 1, sizeof(*nodes));
	if (!nodes)
		return NULL;
	size_t n = 0;
	for (size_t i = 0; i < inv->n; i++) {
		if (n == 0 || strcmp(nodes[n - 1], inv->v[i].node) != 0)
			nodes[n++] = inv->v[i].node;
	}
	return nodes;
}

const struct endpoint *inventory_find_by_addr(const struct inventory *inv, const struct bh_addr *a)
{
	if (!inv->finished) {
		for (size_t i = 0; i < inv->n; i++) {
			for (size_t k = 0; k < inv->v[i].n_addrs; k++) {
				if (addr_cmp(&inv->v[i].addrs[k], a) == 0)
					return &inv->v[i];
			}
		}
		return NULL;
	}
	/* The first claim of a: claims are sorted by address, then endpoint. */
	size_t lo = 0, hi = inv->n_claims;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (addr_cmp(&inv->claims[mid].addr, a) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < inv->n_claims && addr_cmp(&inv->claims[lo].addr, a) == 0 ? inv->claims[lo].ep : NULL;
}

const struct endpoint *inventory_find(const struct inventory *inv, const char *node, const char *name)
{
	if (!inv->finished) {
		for (size_t i = 0; i < inv->n; i++) {
			if (strcmp(inv->v[i].node, node) == 0 && strcmp(inv->v[i].name, name) == 0)
				return &inv->v[i];
		}
		return NULL;
	}
	const struct endpoint key = {.node = node, .name = name};
	return bsearch(&key, inv->v, inv->n, sizeof(*inv->v), endpoint_cmp);
}
