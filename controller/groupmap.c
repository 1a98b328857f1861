/* The group map (see groupmap.h). */
#include <stdlib.h>
#include <string.h>

#include "bulkhead/log.h"
#include "groupmap.h"
#include "store.h"

json_t *groupmap_groups(const struct policy_doc *doc)
{
	json_t *out = json_array();
	for (size_t i = 0; doc && i < doc->n_groups; i++)
		json_array_append_new(out,
				      json_pack("{s:s,s:s}", "name", doc->groups[i]->name, "kind",
						doc->groups[i]->kind == GROUP_NETWORK ? "network" : "label"));
	return out;
}

/* The group names one end's list stands for: its names, or the name of
 * no group. A new array. */
static json_t *end_names(const char *list, bool outside)
{
	json_t *out = json_array();
	if (!list || !*list) {
		json_array_append_new(out, json_string(outside ? FLOW_GROUP_OUTSIDE : FLOW_GROUP_UNGROUPED));
		return out;
	}
	for (const char *p = list; *p;) {
		size_t len = strcspn(p, ",");
		if (len)
			json_array_append_new(out, json_stringn(p, len));
		p += len;
		if (*p == ',')
			p++;
	}
	return out;
}

static void add_int(json_t *o, const char *key, json_int_t v)
{
	json_object_set_new(o, key, json_integer(json_integer_value(json_object_get(o, key)) + v));
}

static void max_int(json_t *o, const char *key, json_int_t v)
{
	if (!json_object_get(o, key) || json_integer_value(json_object_get(o, key)) < v)
		json_object_set_new(o, key, json_integer(v));
}

/* One row's packets on the edge src → dst. */
static void edge_add(json_t *edges, const char *src, const char *dst, const char *verdict, json_int_t count,
		     json_int_t pairs, json_int_t last)
{
	char *key;
	/* Group names hold no newline. */
	if (asprintf(&key, "%s\n%s", src, dst) < 0)
		abort();
	json_t *e = json_object_get(edges, key);
	if (!e) {
		e = json_pack("{s:s,s:s,s:{},s:I,s:I}", "src", src, "dst", dst, "verdicts", "count",
			      (json_int_t)0, "last", (json_int_t)0);
		json_object_set_new(edges, key, e);
	}
	free(key);
	json_t *vs = json_object_get(e, "verdicts"), *v = json_object_get(vs, verdict);
	if (!v) {
		v = json_pack("{s:I,s:I,s:I}", "count", (json_int_t)0, "pairs", (json_int_t)0, "last",
			      (json_int_t)0);
		json_object_set_new(vs, verdict, v);
	}
	add_int(v, "count", count);
	add_int(v, "pairs", pairs);
	max_int(v, "last", last);
	add_int(e, "count", count);
	max_int(e, "last", last);
}

static int by_count(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	json_int_t cx = json_integer_value(json_object_get(x, "count")),
		   cy = json_integer_value(json_object_get(y, "count"));
	if (cx != cy)
		return cx > cy ? -1 : 1;
	int c = strcmp(json_string_value(json_object_get(x, "src")),
		       json_string_value(json_object_get(y, "src")));
	return c ? c
		 : strcmp(json_string_value(json_object_get(x, "dst")),
			  json_string_value(json_object_get(y, "dst")));
}

/* name into nodes (and index) when not there yet, with kind. */
static void node_add(json_t *nodes, json_t *index, const char *name, const char *kind)
{
	if (json_object_get(index, name))
		return;
	json_t *n = json_pack("{s:s,s:s,s:b}", "name", name, "kind", kind, "active", 0);
	json_object_set(index, name, n);
	json_array_append_new(nodes, n);
}

json_t *groupmap_build(json_t *rows, json_t *groups)
{
	json_t *nodes = json_array(), *index = json_object(), *edges = json_object();
	size_t i, k, m;
	json_t *row, *g;
	json_array_foreach (groups, i, g)
		node_add(nodes, index, json_string_value(json_object_get(g, "name")),
			 json_string_value(json_object_get(g, "kind")));
	json_array_foreach (rows, i, row) {
		const char *verdict = json_string_value(json_object_get(row, "verdict"));
		if (!verdict)
			continue;
		json_int_t count = json_integer_value(json_object_get(row, "count")),
			   pairs = json_integer_value(json_object_get(row, "pairs")),
			   last = json_integer_value(json_object_get(row, "last"));
		json_t *src = end_names(json_string_value(json_object_get(row, "src_groups")),
					json_integer_value(json_object_get(row, "src_outside")) != 0),
		       *dst = end_names(json_string_value(json_object_get(row, "dst_groups")),
					json_integer_value(json_object_get(row, "dst_outside")) != 0);
		json_t *a, *b;
		json_array_foreach (src, k, a)
			json_array_foreach (dst, m, b)
				edge_add(edges, json_string_value(a), json_string_value(b), verdict, count,
					 pairs, last);
		json_t *both[] = {src, dst};
		for (size_t s = 0; s < 2; s++)
			json_array_foreach (both[s], k, a) {
				const char *name = json_string_value(a);
				bool none = strcmp(name, FLOW_GROUP_OUTSIDE) == 0 ||
					    strcmp(name, FLOW_GROUP_UNGROUPED) == 0;
				node_add(nodes, index, name, none ? "none" : "former");
				json_object_set_new(json_object_get(index, name), "active", json_true());
			}
		json_decref(src);
		json_decref(dst);
	}
	/* Edges most packets first (ties by name: the same map each time). */
	size_t n = json_object_size(edges), j = 0;
	json_t **v = xcalloc(n ? n : 1, sizeof(*v));
	const char *key;
	json_t *e;
	json_object_foreach (edges, key, e)
		v[j++] = e;
	qsort(v, n, sizeof(*v), by_count);
	json_t *list = json_array();
	for (j = 0; j < n; j++)
		json_array_append(list, v[j]);
	free(v);
	json_decref(edges);
	json_decref(index);
	return json_pack("{s:o,s:o}", "groups", nodes, "edges", list);
}
