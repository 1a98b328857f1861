/* The controller's flow store (controller/store.h): a batch is stored once;
 * one older than the retention is not stored at all; pruning removes what
 * is past the retention, batch keys included; the rules view adds each
 * rule's kernel hits to the packets its denied-flow reports gave it. A
 * temporary state directory holds the database. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "store.h"
#include "test.h"

static char dir[64];

static struct store *open_store(void)
{
	snprintf(dir, sizeof(dir), "/tmp/bulkhead-test-store.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	char *err = NULL;
	struct store *s = store_open(dir, &err);
	if (!s)
		fprintf(stderr, "  store_open: %s\n", err);
	free(err);
	return s;
}

static void close_store(struct store *s)
{
	store_free(s);
	static const char *const names[] = {STORE_FILE, STORE_FILE "-wal", STORE_FILE "-shm"};
	char path[128];
	for (size_t i = 0; i < BH_ARRAY_SIZE(names); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}

/* A batch as the controller has it after naming both ends: one denied
 * flow of count packets by default-deny at web1, and hits of two rules. */
static json_t *batch(int64_t seq, int64_t end, int64_t count)
{
	return json_pack("{s:I,s:I,s:I,s:I,s:[{s:s,s:s,s:s,s:s,s:s,s:I,s:n,s:n,s:s,s:n,s:s,s:I,s:I,s:I,"
			 "s:s,s:s,s:n,s:s}],s:[],s:[{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:s},{s:s,s:s,s:s,s:n,s:s,s:I,s:I,"
			 "s:s}]}",
			 "epoch", (json_int_t)1, "seq", (json_int_t)seq, "start", (json_int_t)(end - 1000), "end",
			 (json_int_t)end, "flows", "endpoint", "web1", "dir", "ingress", "src", "198.18.0.22", "dst",
			 "198.18.0.11", "proto", "udp", "port", (json_int_t)9999, "icmp_type", "icmp_code",
			 "verdict", "deny", "policy", "rule", "default-deny", "count", (json_int_t)count, "first",
			 (json_int_t)(end - 500), "last", (json_int_t)end, "src_groups", "others", "dst_groups", "web",
			 "src_endpoint", "dst_endpoint", "n1/web1", "lost", "hits", "endpoint", "web1", "dir",
			 "ingress", "rule", "web-in/ingress/0", "policy", "web-in", "verdict", "allow", "packets",
			 (json_int_t)5, "bytes", (json_int_t)300, "groups", "web", "endpoint", "web1", "dir",
			 "ingress", "rule", "default-deny", "policy", "verdict", "deny", "packets", (json_int_t)count,
			 "bytes", (json_int_t)(count * 40), "groups", "web");
}

static json_t *rules(struct store *s, const char *verdict, const char *group)
{
	struct flow_query q = {.mode = FLOW_QUERY_RULES, .verdict = verdict, .group = group};
	return store_query_flows(s, &q);
}

static const json_t *rule_row(const json_t *reply, const char *rule)
{
	size_t i;
	json_t *row;
	json_array_foreach(json_object_get(reply, "rules"), i, row)
	{
		if (strcmp(json_string_value(json_object_get(row, "rule")), rule) == 0)
			return row;
	}
	return NULL;
}

static json_int_t member(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

TEST(a_batch_is_stored_once_and_an_expired_one_not_at_all)
{
	struct store *s = open_store();
	CHECK(s != NULL);
	if (!s)
		return;
	int64_t now = clock_wall_ms(), hour = 3600 * 1000;
	json_t *old = batch(1, now - 2 * hour, 7), *fresh = batch(2, now - hour / 2, 7);
	CHECK(store_add_flow_batch(s, "n1", old, now - hour) == STORE_BATCH_EXPIRED);
	CHECK(store_add_flow_batch(s, "n1", fresh, now - hour) == 1);
	CHECK(store_add_flow_batch(s, "n1", fresh, now - hour) == 0); /* resent */
	struct flow_query q = {.mode = FLOW_QUERY_REPORT};
	json_t *report = store_query_flows(s, &q);
	CHECK(json_array_size(json_object_get(report, "flows")) == 1);
	CHECK(member(json_array_get(json_object_get(report, "flows"), 0), "count") == 7);
	json_decref(report);
	json_decref(old);
	json_decref(fresh);
	close_store(s);
}

TEST(the_rules_view_puts_hits_beside_reported_packets)
{
	struct store *s = open_store();
	CHECK(s != NULL);
	if (!s)
		return;
	int64_t now = clock_wall_ms();
	json_t *a = batch(1, now - 2000, 3), *b = batch(2, now - 1000, 4);
	CHECK(store_add_flow_batch(s, "n1", a, 0) == 1);
	CHECK(store_add_flow_batch(s, "n1", b, 0) == 1);
	json_t *r = rules(s, NULL, NULL);
	const json_t *allow = rule_row(r, "web-in/ingress/0"), *deny = rule_row(r, "default-deny");
	CHECK(allow && member(allow, "hits") == 10 && member(allow, "bytes") == 600 && member(allow, "count") == 0);
	CHECK(deny && member(deny, "hits") == 7 && member(deny, "count") == 7 && member(deny, "pairs") == 1);
	CHECK(json_array_size(json_object_get(r, "rules")) == 2);
	json_decref(r);
	r = rules(s, "allow", NULL);
	CHECK(json_array_size(json_object_get(r, "rules")) == 1 && rule_row(r, "web-in/ingress/0"));
	json_decref(r);
	/* A rule is the enforcing endpoint's (web1, in web): the flow's source
	 * being in others does not make it others' rule. */
	r = rules(s, NULL, "others");
	CHECK(json_array_size(json_object_get(r, "rules")) == 0);
	json_decref(r);
	r = rules(s, NULL, "web");
	deny = rule_row(r, "default-deny");
	CHECK(deny && member(deny, "hits") == 7 && member(deny, "count") == 7);
	json_decref(r);
	json_decref(a);
	json_decref(b);
	close_store(s);
}

TEST(pruning_removes_what_is_past_the_retention)
{
	struct store *s = open_store();
	CHECK(s != NULL);
	if (!s)
		return;
	int64_t now = clock_wall_ms(), hour = 3600 * 1000;
	json_t *old = batch(1, now - 3 * hour, 2), *fresh = batch(2, now - 1000, 5);
	CHECK(store_add_flow_batch(s, "n1", old, 0) == 1);
	CHECK(store_add_flow_batch(s, "n1", fresh, 0) == 1);
	int64_t removed = -1, day = 24 * hour;
	CHECK(store_prune_flows(s, now - hour, now - hour - day, 1000, &removed) == 0 && removed == 1);
	json_t *r = rules(s, NULL, NULL);
	CHECK(member(rule_row(r, "default-deny"), "hits") == 5 && member(rule_row(r, "default-deny"), "count") == 5);
	CHECK(member(rule_row(r, "web-in/ingress/0"), "hits") == 5);
	json_decref(r);
	/* Its key outlives its flows (received now, kept a day longer): sent
	 * again, it is still known, and not counted twice. */
	CHECK(store_add_flow_batch(s, "n1", old, 0) == 0);
	/* Once the key goes too, it is new again (the retention keeps such a
	 * batch out: see above). */
	CHECK(store_prune_flows(s, now - hour, now + 1000, 1000, &removed) == 0 && removed == 0);
	CHECK(store_add_flow_batch(s, "n1", old, 0) == 1);
	json_decref(old);
	json_decref(fresh);

	/* In chunks: 1 says there is more. */
	for (int64_t seq = 10; seq < 13; seq++) {
		json_t *b = batch(seq, now - 2 * hour, 1);
		CHECK(store_add_flow_batch(s, "n1", b, 0) == 1);
		json_decref(b);
	}
	CHECK(store_prune_flows(s, now - hour, 0, 2, &removed) == 1 && removed == 2);
	/* 4 old flow rows (and 8 old hits rows: 2 per batch) in all. */
	int calls = 1, r2;
	int64_t flows_removed = removed;
	while ((r2 = store_prune_flows(s, now - hour, 0, 2, &removed)) == 1 && calls < 10) {
		flows_removed += removed;
		calls++;
	}
	CHECK(r2 == 0 && flows_removed + removed == 4 && calls == 4);
	close_store(s);
}

int main(void)
{
	return test_main();
}
