/* The group map (controller/groupmap.h): the store's group rows become
 * edges between group names, one per (source, destination) pair with its
 * packets per verdict; ends in no group get FLOW_GROUP_*'s names. */
#include <string.h>

#include <jansson.h>

#include "groupmap.h"
#include "store.h"
#include "test.h"

static json_t *row(const char *src, int src_out, const char *dst, int dst_out, const char *verdict, int count,
		   int last)
{
	return json_pack("{s:s?,s:i,s:s?,s:i,s:s,s:i,s:i,s:i}", "src_groups", src, "src_outside", src_out,
			 "dst_groups", dst, "dst_outside", dst_out, "verdict", verdict, "count", count,
			 "pairs", 1, "last", last);
}

static json_t *edge(json_t *map, const char *src, const char *dst)
{
	size_t i;
	json_t *e;
	json_array_foreach (json_object_get(map, "edges"), i, e)
		if (strcmp(json_string_value(json_object_get(e, "src")), src) == 0 &&
		    strcmp(json_string_value(json_object_get(e, "dst")), dst) == 0)
			return e;
	return NULL;
}

static json_t *node(json_t *map, const char *name)
{
	size_t i;
	json_t *g;
	json_array_foreach (json_object_get(map, "groups"), i, g)
		if (strcmp(json_string_value(json_object_get(g, "name")), name) == 0)
			return g;
	return NULL;
}

static int64_t count(json_t *e, const char *verdict)
{
	return json_integer_value(
	    json_object_get(json_object_get(json_object_get(e, "verdicts"), verdict), "count"));
}

TEST(rows_become_edges_per_group_pair_with_counts_per_verdict)
{
	json_t *groups = json_pack("[{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s}]", "name", "web", "kind",
				   "label", "name", "db", "kind", "label", "name", "api", "kind", "label",
				   "name", "corp", "kind", "network");
	json_t *rows =
	    json_pack("[o,o,o,o,o]", row("web", 0, "db", 0, "deny", 5, 100),
		      row("web", 0, "db", 0, "allow", 7, 200), row("web,api", 0, "db", 0, "deny", 2, 300),
		      row(NULL, 0, "db", 0, "audit", 1, 50), row(NULL, 1, "web", 0, "deny", 3, 60));
	json_t *map = groupmap_build(rows, groups);
	json_t *wd = edge(map, "web", "db");
	CHECK(wd && count(wd, "deny") == 7 && count(wd, "allow") == 7);
	CHECK(wd && json_integer_value(json_object_get(wd, "count")) == 14);
	CHECK(wd && json_integer_value(json_object_get(wd, "last")) == 300);
	/* A source in two groups counts on both edges. */
	CHECK(edge(map, "api", "db") && count(edge(map, "api", "db"), "deny") == 2);
	CHECK(edge(map, FLOW_GROUP_UNGROUPED, "db") &&
	      count(edge(map, FLOW_GROUP_UNGROUPED, "db"), "audit") == 1);
	CHECK(edge(map, FLOW_GROUP_OUTSIDE, "web") != NULL);
	/* The most packets first. */
	CHECK(json_array_get(json_object_get(map, "edges"), 0) == wd);
	/* The policy's groups first and once; the ends' none-groups after;
	 * a group no edge touches is inactive. */
	CHECK(json_array_size(json_object_get(map, "groups")) == 6);
	CHECK_STR(
	    json_string_value(json_object_get(json_array_get(json_object_get(map, "groups"), 0), "name")),
	    "web");
	CHECK(json_is_false(json_object_get(node(map, "corp"), "active")));
	CHECK(json_is_true(json_object_get(node(map, "api"), "active")));
	CHECK_STR(json_string_value(json_object_get(node(map, FLOW_GROUP_OUTSIDE), "kind")), "none");
	json_decref(map);
	json_decref(rows);
	json_decref(groups);
}

TEST(a_group_of_an_older_revision_is_former)
{
	json_t *groups = json_array();
	json_t *rows = json_pack("[o]", row("old", 0, "older", 0, "deny", 1, 1));
	json_t *map = groupmap_build(rows, groups);
	CHECK_STR(json_string_value(json_object_get(node(map, "old"), "kind")), "former");
	CHECK(json_array_size(json_object_get(map, "edges")) == 1);
	json_decref(map);
	json_decref(rows);
	json_decref(groups);
}

int main(void)
{
	return test_main();
}
