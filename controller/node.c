/* The controller's one table of nodes (see node.h): pointers sorted by
 * name, found by binary search. */
#include <stdlib.h>
#include <string.h>

#include "bulkhead/log.h"
#include "node.h"

/* What one node makes the controller log: 20 lines every 10 s. */
#define NODE_LOG_BURST 20
#define NODE_LOG_MS    10000
/* Each reason its flow records are not stored: a line a minute. */
#define NODE_DROP_LOG_MS 60000

struct nodes {
	struct node **v;
	size_t n, cap;
};

struct nodes *nodes_new(void)
{
	return xcalloc(1, sizeof(struct nodes));
}

static void node_free(struct node *n)
{
	json_decref(n->endpoints);
	json_decref(n->bundle);
	free(n->deps);
	free(n->agent_version);
	json_decref(n->errors);
	free(n->list_error);
	json_decref(n->refused_list);
	json_decref(n->held_bundle);
	json_decref(n->inflight_bundle);
	free(n->name);
	free(n);
}

void nodes_free(struct nodes *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		node_free(t->v[i]);
	free(t->v);
	free(t);
}

/* Where name is, or would go. */
static size_t position(const struct nodes *t, const char *name)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(t->v[mid]->name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct node *nodes_find(const struct nodes *t, const char *name)
{
	size_t i = position(t, name);
	return i < t->n && strcmp(t->v[i]->name, name) == 0 ? t->v[i] : NULL;
}

struct node *nodes_add(struct nodes *t, const char *name)
{
	size_t i = position(t, name);
	if (i < t->n && strcmp(t->v[i]->name, name) == 0)
		return t->v[i];
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 16;
		t->v = xrealloc(t->v, t->cap * sizeof(*t->v));
	}
	struct node *n = xcalloc(1, sizeof(*n));
	n->name = xstrdup(name);
	n->errors = json_array();
	n->log = RATELIMIT_INIT(NODE_LOG_MS, NODE_LOG_BURST);
	for (int r = 0; r < STORE_DROP_COUNT; r++)
		n->drop_log[r] = RATELIMIT_INIT(NODE_DROP_LOG_MS, 1);
	memmove(&t->v[i + 1], &t->v[i], (t->n - i) * sizeof(*t->v));
	t->v[i] = n;
	t->n++;
	return n;
}

void nodes_remove(struct nodes *t, struct node *n)
{
	size_t i = position(t, n->name);
	if (i >= t->n || t->v[i] != n)
		return;
	memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(*t->v));
	t->n--;
	node_free(n);
}

size_t nodes_count(const struct nodes *t)
{
	return t->n;
}

struct node *nodes_at(const struct nodes *t, size_t i)
{
	return t->v[i];
}
