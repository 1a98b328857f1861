/* The controller's flow store (controller/store.h): a batch is stored once;
 * one older than the retention is not stored at all; pruning removes what
 * is past the retention, batch keys included; the rules view adds each
 * rule's kernel hits to the packets its denied-flow reports gave it. A
 * temporary state directory holds the database. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "bulkhead/proto.h"
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
	test_remove_dir(dir);
}

/* A batch as the controller has it after naming both ends: one denied
 * flow of count packets by default-deny at web1, and hits of two rules. */
static json_t *batch(int64_t seq, int64_t end, int64_t count)
{
	return json_pack(
	    "{s:I,s:I,s:I,s:I,s:[{s:s,s:s,s:s,s:s,s:s,s:I,s:n,s:n,s:s,s:n,s:s,s:I,s:I,s:I,"
	    "s:s,s:s,s:n,s:s}],s:[],s:[{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:s},{s:s,s:s,s:s,s:n,s:s,s:I,s:I,"
	    "s:s}]}",
	    "epoch", (json_int_t)1, "seq", (json_int_t)seq, "start", (json_int_t)(end - 1000), "end",
	    (json_int_t)end, "flows", "endpoint", "web1", "dir", "ingress", "src", "198.18.0.22", "dst",
	    "198.18.0.11", "proto", "udp", "port", (json_int_t)9999, "icmp_type", "icmp_code", "verdict",
	    "deny", "policy", "rule", "default-deny", "count", (json_int_t)count, "first",
	    (json_int_t)(end - 500), "last", (json_int_t)end, "src_groups", "others", "dst_groups", "web",
	    "src_endpoint", "dst_endpoint", "n1/web1", "lost", "hits", "endpoint", "web1", "dir", "ingress",
	    "rule", "web-in/ingress/0", "policy", "web-in", "verdict", "allow", "packets", (json_int_t)5,
	    "bytes", (json_int_t)300, "groups", "web", "endpoint", "web1", "dir", "ingress", "rule",
	    "default-deny", "policy", "verdict", "deny", "packets", (json_int_t)count, "bytes",
	    (json_int_t)(count * 40), "groups", "web");
}

/* Stores batch with nothing dropped, received now. */
static int add(struct store *s, const char *node, json_t *batch)
{
	struct store_drops none = {0};
	return store_add_flow_batch(s, node, batch, &none, clock_wall_ms());
}

static json_t *query(struct store *s, const struct flow_query *q)
{
	json_t *out = NULL;
	if (store_query_flows(s, q, &out) < 0)
		fprintf(stderr, "  store_query_flows: %s\n", store_error(s));
	return out;
}

static json_t *rules(struct store *s, const char *verdict, const char *group)
{
	struct flow_query q = {.mode = FLOW_QUERY_RULES, .verdict = verdict, .group = group};
	return query(s, &q);
}

static const json_t *rule_row(const json_t *reply, const char *rule)
{
	size_t i;
	json_t *row;
	json_array_foreach (json_object_get(reply, "rules"), i, row) {
		if (strcmp(json_string_value(json_object_get(row, "rule")), rule) == 0)
			return row;
	}
	return NULL;
}

static json_int_t member(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

TEST(a_batch_is_stored_once)
{
	struct store *s = open_store();
	CHECK(s != NULL);
	if (!s)
		return;
	int64_t now = clock_wall_ms(), hour = 3600 * 1000, records = -1;
	json_t *fresh = batch(2, now - hour / 2, 7);
	CHECK(store_flow_batch_seen(s, "n1", 1, 2) == 0);
	CHECK(add(s, "n1", fresh) == 1);
	CHECK(store_flow_batch_seen(s, "n1", 1, 2) == 1 && store_flow_batch_seen(s, "n2", 1, 2) == 0);
	CHECK(add(s, "n1", fresh) == 0); /* resent */
	struct flow_query q = {.mode = FLOW_QUERY_REPORT};
	json_t *report = query(s, &q);
	CHECK(json_array_size(json_object_get(report, "flows")) == 1);
	CHECK(member(json_array_get(json_object_get(report, "flows"), 0), "count") == 7);
	json_decref(report);
	/* One flow and two hits: the node's records, once. */
	CHECK(store_flow_records(s, "n1", &records) == 0 && records == 3);
	CHECK(store_flow_records(s, "n2", &records) == 0 && records == 0);
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
	CHECK(add(s, "n1", a) == 1);
	CHECK(add(s, "n1", b) == 1);
	json_t *r = rules(s, NULL, NULL);
	const json_t *allow = rule_row(r, "web-in/ingress/0"), *deny = rule_row(r, "default-deny");
	CHECK(allow && member(allow, "hits") == 10 && member(allow, "bytes") == 600 &&
	      member(allow, "count") == 0);
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

/* An observed connection (observe all): the batch's flow as "allow". */
static json_t *allowed_batch(int64_t seq, int64_t end, int64_t count)
{
	json_t *b = batch(seq, end, count);
	json_t *f = json_array_get(json_object_get(b, "flows"), 0);
	json_object_set_new(f, "verdict", json_string("allow"));
	json_object_set_new(f, "rule", json_string("web-in/ingress/0"));
	json_object_set_new(f, "policy", json_string("web-in"));
	return b;
}

TEST(allowed_flows_are_listed_only_when_asked_for)
{
	struct store *s = open_store();
	CHECK(s != NULL);
	if (!s)
		return;
	int64_t now = clock_wall_ms();
	json_t *d = batch(1, now - 2000, 3), *a = allowed_batch(2, now - 1000, 4);
	CHECK(add(s, "n1", d) == 1 && add(s, "n1", a) == 1);
	/* The blocked-flow report leaves them out; --verdict allow has them only. */
	struct flow_query q = {.mode = FLOW_QUERY_REPORT, .blocked_only = true};
	json_t *r = query(s, &q);
	CHECK(json_array_size(json_object_get(r, "flows")) == 1);
	CHECK_STR(
	    json_string_value(json_object_get(json_array_get(json_object_get(r, "flows"), 0), "verdict")),
	    "deny");
	json_decref(r);
	q.verdict = "allow";
	r = query(s, &q);
	CHECK(json_array_size(json_object_get(r, "flows")) == 1);
	CHECK(member(json_array_get(json_object_get(r, "flows"), 0), "count") == 4);
	json_decref(r);
	q = (struct flow_query){.mode = FLOW_QUERY_FOLLOW, .blocked_only = true};
	r = query(s, &q);
	CHECK(json_array_size(json_object_get(r, "flows")) == 1);
	json_decref(r);
	/* Per rule, the allow rule's hits beside the connections reported for it. */
	r = rules(s, "allow", NULL);
	const json_t *allow = rule_row(r, "web-in/ingress/0");
	CHECK(allow && member(allow, "hits") == 10 && member(allow, "count") == 4 &&
	      member(allow, "pairs") == 1);
	json_decref(r);
	json_decref(d);
	json_decref(a);
	close_store(s);
}

/* One flow as the controller names it: src (endpoint or NULL, groups),
 * dst, "proto/port" or "icmp/type/code", verdict, count. */
static json_t *named_flow(const char *src, const char *src_ep, const char *src_groups, const char *dst,
			  const char *dst_ep, const char *dst_groups, const char *proto, int a, int b,
			  const char *verdict, int64_t count, int64_t last)
{
	bool icmp = strncmp(proto, "icmp", 4) == 0;
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:s,s:n,s:s,s:I,s:I,s:I,s:s,s:s,s:s?,s:s?}",
			 "endpoint", "web1", "dir", "ingress", "src", src, "dst", dst, "proto", proto, "port",
			 icmp ? json_null() : json_integer(a), "icmp_type",
			 icmp ? json_integer(a) : json_null(), "icmp_code",
			 icmp ? json_integer(b) : json_null(), "verdict", verdict, "policy", "rule",
			 "default-deny", "count", (json_int_t)count, "first", (json_int_t)last, "last",
			 (json_int_t)last, "src_groups", src_groups, "dst_groups", dst_groups, "src_endpoint",
			 src_ep, "dst_endpoint", dst_ep);
}

/* The number of rows of a report under q, and their packets. */
static size_t report_rows(struct store *s, struct flow_query q, int64_t *packets)
{
	json_t *r = query(s, &q);
	size_t i, n = json_array_size(json_object_get(r, "flows"));
	json_t *row;
	*packets = 0;
	json_array_foreach (json_object_get(r, "flows"), i, row)
		*packets += member(row, "count");
	json_decref(r);
	return n;
}

TEST(flows_by_port_and_by_the_group_of_each_end_and_the_group_map_rows)
{
	struct store *s = open_store();
	CHECK(s != NULL);
	if (!s)
		return;
	int64_t now = clock_wall_ms(), p;
	json_t *b =
	    json_pack("{s:I,s:I,s:I,s:I,s:[],s:[],s:[]}", "epoch", (json_int_t)1, "seq", (json_int_t)1,
		      "start", (json_int_t)(now - 1000), "end", (json_int_t)now, "flows", "lost", "hits");
	json_t *flows = json_object_get(b, "flows");
	json_array_append_new(flows, named_flow("198.18.0.1", "n1/web1", "web,all", "198.18.0.2", "n2/db1",
						"db,all", "tcp", 5432, 0, "deny", 3, now));
	json_array_append_new(flows, named_flow("203.0.113.5", NULL, "office", "198.18.0.1", "n1/web1",
						"web,all", "tcp", 80, 0, "deny", 2, now));
	json_array_append_new(flows, named_flow("192.0.2.9", NULL, "", "198.18.0.1", "n1/web1", "web,all",
						"icmp", 8, 0, "audit", 1, now));
	json_array_append_new(flows, named_flow("198.18.0.3", "n1/batch1", "", "198.18.0.2", "n2/db1",
						"db,all", "udp", 53, 0, "deny", 5, now));
	json_array_append_new(flows, named_flow("198.18.0.1", "n1/web1", "web,all", "198.18.0.4", "n2/api1",
						"api,all", "tcp", 8080, 0, "allow", 4, now));
	CHECK(add(s, "n1", b) == 1);
	struct flow_query q = {.mode = FLOW_QUERY_REPORT};
	CHECK(report_rows(s, q, &p) == 5 && p == 15);
	q.port = (struct flow_port){.set = true, .proto = "tcp", .lo = 5432, .hi = 5432, -1, -1};
	CHECK(report_rows(s, q, &p) == 1 && p == 3);
	q.port = (struct flow_port){.set = true, .lo = 53, .hi = 53, -1, -1}; /* any protocol */
	CHECK(report_rows(s, q, &p) == 1 && p == 5);
	q.port = (struct flow_port){.set = true, .proto = "tcp", .lo = 0, .hi = 65535, -1, -1};
	CHECK(report_rows(s, q, &p) == 3 && p == 9);
	q.port = (struct flow_port){.set = true, .proto = "tcp", .lo = 8000, .hi = 8100, -1, -1};
	CHECK(report_rows(s, q, &p) == 1 && p == 4);
	q.port = (struct flow_port){.set = true, .proto = "icmp", .lo = 0, .hi = 65535, 8, -1};
	CHECK(report_rows(s, q, &p) == 1 && p == 1);
	q.port = (struct flow_port){.set = true, .proto = "icmp", .lo = 0, .hi = 65535, 8, 3};
	CHECK(report_rows(s, q, &p) == 0);
	q.port = (struct flow_port){0};
	q.src_group = "web";
	CHECK(report_rows(s, q, &p) == 2 && p == 7);
	q.src_group = NULL;
	q.dst_group = "db";
	CHECK(report_rows(s, q, &p) == 2 && p == 8);
	q.src_group = "web";
	CHECK(report_rows(s, q, &p) == 1 && p == 3);
	q.src_group = FLOW_GROUP_OUTSIDE;
	q.dst_group = NULL;
	CHECK(report_rows(s, q, &p) == 1 && p == 1);
	q.src_group = FLOW_GROUP_UNGROUPED;
	CHECK(report_rows(s, q, &p) == 1 && p == 5);
	q.src_group = "office";
	CHECK(report_rows(s, q, &p) == 1 && p == 2);
	q.src_group = "al"; /* a name, not a prefix */
	CHECK(report_rows(s, q, &p) == 0);
	q.src_group = NULL;
	q.verdict = "allow";
	CHECK(report_rows(s, q, &p) == 1 && p == 4);

	q = (struct flow_query){.mode = FLOW_QUERY_GROUPS};
	json_t *g = query(s, &q);
	json_t *rows = json_object_get(g, "groups");
	CHECK(json_array_size(rows) == 5);
	json_t *first = json_array_get(rows, 0); /* most packets first */
	CHECK_STR(json_string_value(json_object_get(first, "src_groups")), "");
	CHECK(member(first, "src_outside") == 0 && member(first, "count") == 5 &&
	      member(first, "pairs") == 1);
	CHECK_STR(json_string_value(json_object_get(first, "dst_groups")), "db,all");
	json_decref(g);
	q.verdict = "deny";
	q.dst_group = "web";
	g = query(s, &q);
	rows = json_object_get(g, "groups");
	CHECK(json_array_size(rows) == 1);
	CHECK_STR(json_string_value(json_object_get(json_array_get(rows, 0), "src_groups")), "office");
	CHECK(member(json_array_get(rows, 0), "src_outside") == 1);
	json_decref(g);
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
	CHECK(add(s, "n1", old) == 1);
	CHECK(add(s, "n1", fresh) == 1);
	int64_t removed = -1, day = 24 * hour;
	CHECK(store_prune_flows(s, now - hour, now - hour - day, 1000, &removed) == 0 && removed == 1);
	json_t *r = rules(s, NULL, NULL);
	CHECK(member(rule_row(r, "default-deny"), "hits") == 5 &&
	      member(rule_row(r, "default-deny"), "count") == 5);
	CHECK(member(rule_row(r, "web-in/ingress/0"), "hits") == 5);
	json_decref(r);
	/* Its key outlives its flows (received now, kept a day longer): sent
	 * again, it is still known, and not counted twice. */
	CHECK(add(s, "n1", old) == 0);
	/* Once the key goes too, it is new again (the retention keeps such a
	 * batch out: see above). */
	CHECK(store_prune_flows(s, now - hour, now + 1000, 1000, &removed) == 0 && removed == 0);
	CHECK(add(s, "n1", old) == 1);
	json_decref(old);
	json_decref(fresh);

	/* In chunks: 1 says there is more. */
	for (int64_t seq = 10; seq < 13; seq++) {
		json_t *b = batch(seq, now - 2 * hour, 1);
		CHECK(add(s, "n1", b) == 1);
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
	/* The node's usage follows: 1 fresh flow and its 2 hits are left. */
	int64_t records = -1;
	CHECK(store_flow_records(s, "n1", &records) == 0 && records == 3);
	close_store(s);
}

/* Runs sql on the store's database from a second connection (what an
 * older version, or a corruption, left there). */
static void raw_sql(const char *sql)
{
	char path[128], *msg = NULL;
	snprintf(path, sizeof(path), "%s/%s", dir, STORE_FILE);
	sqlite3 *db = NULL;
	if (sqlite3_open(path, &db) != SQLITE_OK || sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fprintf(stderr, "  raw sql: %s\n", msg ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	sqlite3_close(db);
}

static const json_t *find(const json_t *reply, const char *list, const char *key, const char *value)
{
	size_t i;
	json_t *row;
	json_array_foreach (json_object_get(reply, list), i, row) {
		if (strcmp(json_string_value(json_object_get(row, key)), value) == 0)
			return row;
	}
	return NULL;
}

TEST(no_sum_overflows_not_even_over_rows_an_older_version_stored)
{
	struct store *s = open_store();
	CHECK(s != NULL);
	if (!s)
		return;
	int64_t now = clock_wall_ms();
	/* Two losses of 2^62 made SUM() fail ("integer overflow"), and every
	 * `bulkhead flows` with them for the whole retention. */
	char sql[1024];
	snprintf(sql, sizeof(sql),
		 "INSERT INTO flow_losses (node, endpoint, time, enobufs, gap, spool) VALUES"
		 " ('n1','web1',%lld,0,4611686018427387904,0), ('n1','web1',%lld,0,4611686018427387904,0);"
		 "INSERT INTO flows (node, endpoint, direction, first, last, src, src_groups, dst, "
		 "dst_groups, proto,"
		 " verdict, rule, count) VALUES"
		 " ('n1','web1','ingress',%lld,%lld,'198.18.0.1','','198.18.0.2','','udp','deny','r',"
		 "9223372036854775807),"
		 " ('n1','web1','ingress',%lld,%lld,'198.18.0.1','','198.18.0.2','','udp','deny','r',"
		 "9223372036854775807);",
		 (long long)now, (long long)now, (long long)now, (long long)now, (long long)now,
		 (long long)now);
	raw_sql(sql);
	struct flow_query q = {.mode = FLOW_QUERY_REPORT};
	json_t *r = query(s, &q);
	CHECK(r != NULL);
	CHECK(member(json_array_get(json_object_get(r, "lost"), 0), "gap") == INT64_C(9007199254740992));
	CHECK(member(json_array_get(json_object_get(r, "flows"), 0), "count") == INT64_C(9007199254740992));
	json_decref(r);
	r = rules(s, NULL, NULL);
	CHECK(r && member(rule_row(r, "r"), "count") == INT64_C(9007199254740992));
	json_decref(r);

	/* What comes in now is clamped to the wire schema's range (2^40)
	 * before it is summed, if it ever got past the schema. */
	json_t *b = batch(1, now, 5);
	json_array_append_new(json_object_get(b, "lost"),
			      json_pack("{s:s,s:I,s:I,s:I}", "endpoint", "web2", "enobufs",
					(json_int_t)INT64_MAX, "gap", (json_int_t)INT64_MAX, "spool",
					(json_int_t)0));
	json_array_append(json_object_get(b, "lost"), json_array_get(json_object_get(b, "lost"), 0));
	CHECK(add(s, "n1", b) == 1);
	r = query(s, &q);
	const json_t *web2 = find(r, "lost", "endpoint", "web2");
	CHECK(web2 && member(web2, "gap") == 2 * PROTO_FLOWS_COUNT_MAX &&
	      member(web2, "enobufs") == 2 * PROTO_FLOWS_COUNT_MAX);
	json_decref(r);
	json_decref(b);
	close_store(s);
}

TEST(what_was_not_stored_is_reported_per_node_and_reason)
{
	struct store *s = open_store();
	CHECK(s != NULL);
	if (!s)
		return;
	int64_t now = clock_wall_ms();
	struct store_drops d = {0};
	d.v[STORE_DROP_RATE] = (struct store_drop_count){1, 40, 80};
	d.v[STORE_DROP_EXPIRED] = (struct store_drop_count){1, 3, 6};
	for (int seq = 1; seq <= 3; seq++) {
		json_t *b = batch(seq, now, 1);
		CHECK(store_add_flow_batch(s, "n1", b, &d, now) == 1);
		CHECK(store_add_flow_batch(s, "n1", b, &d, now) == 0); /* resent: not twice */
		json_decref(b);
	}
	struct flow_query q = {.mode = FLOW_QUERY_REPORT};
	json_t *r = query(s, &q);
	const json_t *rate = find(r, "dropped", "reason", "rate"),
		     *exp = find(r, "dropped", "reason", "expired");
	CHECK(rate && member(rate, "batches") == 3 && member(rate, "records") == 120 &&
	      member(rate, "packets") == 240);
	CHECK(exp && member(exp, "batches") == 3 && member(exp, "packets") == 18);
	CHECK(json_array_size(json_object_get(r, "dropped")) == 2);
	json_decref(r);
	/* Drops alone (a batch with no room for even its key): added up too. */
	struct store_drops alone = {0};
	alone.v[STORE_DROP_RATE] = (struct store_drop_count){1, 5, 5};
	CHECK(store_add_flow_drops(s, "n1", &alone, now) == 0);
	r = query(s, &q);
	rate = find(r, "dropped", "reason", "rate");
	CHECK(rate && member(rate, "batches") == 4 && member(rate, "records") == 125);
	json_decref(r);
	/* Added up in one row per minute, whatever a node sends. */
	sqlite3 *db = NULL;
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, STORE_FILE);
	sqlite3_stmt *st = NULL;
	CHECK(sqlite3_open(path, &db) == SQLITE_OK &&
	      sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM flow_drops", -1, &st, NULL) == SQLITE_OK &&
	      sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 2);
	sqlite3_finalize(st);
	sqlite3_close(db);
	close_store(s);
}

/* A batch of n distinct flows of one packet each. */
static json_t *wide_batch(int64_t seq, int64_t end, int n)
{
	json_t *b = batch(seq, end, 1), *flows = json_object_get(b, "flows"), *one = json_array_get(flows, 0);
	for (int i = 1; i < n; i++) {
		json_t *f = json_deep_copy(one);
		json_object_set_new(f, "port", json_integer(i));
		json_array_append_new(flows, f);
	}
	return b;
}

TEST(a_version_3_database_gets_its_nodes_usage_counted)
{
	struct store *s = open_store();
	CHECK(s != NULL);
	if (!s)
		return;
	int64_t now = clock_wall_ms(), records = -1;
	json_t *a = batch(1, now, 2), *b = batch(2, now, 3);
	CHECK(add(s, "n1", a) == 1 && add(s, "n2", b) == 1);
	store_free(s);
	/* What version 3 had: no usage, no drops. */
	raw_sql("DROP TABLE flow_usage; DROP TABLE flow_drops; PRAGMA user_version = 3;");
	char *err = NULL;
	s = store_open(dir, &err);
	CHECK(s != NULL);
	free(err);
	if (!s)
		return;
	CHECK(store_flow_records(s, "n1", &records) == 0 && records == 3);
	CHECK(store_flow_records(s, "n2", &records) == 0 && records == 3);
	CHECK(add(s, "n1", a) == 0); /* its keys are still known */
	struct flow_query q = {.mode = FLOW_QUERY_REPORT};
	json_t *r = query(s, &q);
	CHECK(r && json_array_size(json_object_get(r, "dropped")) == 0);
	json_decref(r);
	json_decref(a);
	json_decref(b);
	close_store(s);
}

TEST(a_flow_query_past_its_limit_is_stopped_and_says_so)
{
	struct store *s = open_store();
	CHECK(s != NULL);
	if (!s)
		return;
	json_t *b = wide_batch(1, clock_wall_ms(), 30000);
	CHECK(add(s, "n1", b) == 1);
	json_decref(b);
	struct flow_query q = {.mode = FLOW_QUERY_REPORT, .limit = 10};
	json_t *out = NULL;
	store_set_query_limit(s, 1);
	/* 30,000 rows to group: no machine does that in a millisecond. */
	CHECK(store_query_flows(s, &q, &out) == -ETIMEDOUT && out == NULL);
	CHECK(strstr(store_error(s), "stopped after 1 ms") != NULL);
	store_set_query_limit(s, 0);
	CHECK(store_query_flows(s, &q, &out) == 0 && json_array_size(json_object_get(out, "flows")) == 10);
	json_decref(out);
	/* The limit is the query's: a batch is stored meanwhile all the same. */
	store_set_query_limit(s, 1);
	b = wide_batch(2, clock_wall_ms(), 30000);
	CHECK(add(s, "n1", b) == 1);
	json_decref(b);
	close_store(s);
}

TEST(a_batch_that_fails_on_a_full_disk_says_why)
{
	struct store *s = open_store();
	CHECK(s != NULL);
	if (!s)
		return;
	/* A file size limit stands for a full disk: writes past it fail. */
	struct rlimit old, lim;
	signal(SIGXFSZ, SIG_IGN);
	CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
	lim = old;
	lim.rlim_cur = 256 << 10;
	CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	json_t *b = wide_batch(1, clock_wall_ms(), 20000);
	int r = add(s, "n1", b);
	CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
	CHECK(r == -EIO);
	const char *e = store_error(s);
	fprintf(stderr, "  # the error: %s\n", e);
	CHECK(!strstr(e, "rollback") && !strstr(e, "not an error"));
	CHECK(strstr(e, "disk is full") || strstr(e, "I/O error"));
	/* And once there is room again, the batch goes in. */
	CHECK(add(s, "n1", b) == 1);
	json_decref(b);
	close_store(s);
}

TEST(a_corrupt_database_says_so)
{
	struct store *s = open_store();
	CHECK(s != NULL);
	if (!s)
		return;
	json_t *b = wide_batch(1, clock_wall_ms(), 5000);
	CHECK(add(s, "n1", b) == 1);
	json_decref(b);
	store_free(s);
	/* Every page but the first (the schema) overwritten. */
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, STORE_FILE);
	FILE *f = fopen(path, "r+");
	struct stat st;
	CHECK(f && stat(path, &st) == 0 && st.st_size > 8192);
	if (f) {
		fseek(f, 4096, SEEK_SET);
		for (long i = 4096; i < st.st_size; i++)
			fputc(0xa5, f);
		fclose(f);
	}
	char *err = NULL;
	s = store_open(dir, &err);
	if (!s) { /* refused at once: with the reason */
		CHECK(err && strstr(err, "malformed") && !strstr(err, "not an error"));
		free(err);
		close_store(NULL);
		return;
	}
	b = wide_batch(2, clock_wall_ms(), 10);
	CHECK(add(s, "n1", b) == -EIO);
	fprintf(stderr, "  # the error: %s\n", store_error(s));
	CHECK(strstr(store_error(s), "malformed") && !strstr(store_error(s), "not an error"));
	json_decref(b);
	close_store(s);
}

int main(void)
{
	return test_main();
}
