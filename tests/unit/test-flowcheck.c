/* What the controller keeps of a node's flow batch (controller/flowcheck.h):
 * a batch older than the retention is counted as expired, times ahead of
 * the controller's clock become its time, flows of endpoints the node did
 * not report are not kept, and records past the rate allowance or the
 * quota are not kept; everything not kept is counted by reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "flowcheck.h"
#include "test.h"

#define NOW    INT64_C(1700000000000)
#define MINUTE INT64_C(60000)

/* A flow of endpoint on port, of count packets, last seen at last. */
static json_t *flow(const char *endpoint, int port, int64_t count, int64_t last)
{
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:n,s:s,s:I,s:I,s:I}", "endpoint", endpoint, "dir",
			 "ingress", "src", "198.18.0.1", "dst", "198.18.0.2", "proto", "udp", "port", port,
			 "verdict", "deny", "policy", "rule", "default-deny", "count", (json_int_t)count,
			 "first", (json_int_t)(last - 10), "last", (json_int_t)last);
}

static json_t *hit(const char *endpoint)
{
	return json_pack("{s:s,s:s,s:s,s:n,s:s,s:i,s:i}", "endpoint", endpoint, "dir", "ingress", "rule", "r",
			 "policy", "verdict", "allow", "packets", 1, "bytes", 60);
}

/* A batch of n flows of web1 (ports 1..n, 2 packets each) ending at end. */
static json_t *batch(int n, int64_t end)
{
	json_t *flows = json_array();
	for (int i = 1; i <= n; i++)
		json_array_append_new(flows, flow("web1", i, 2, end));
	return json_pack("{s:i,s:i,s:I,s:I,s:o,s:[],s:[]}", "epoch", 1, "seq", 1, "start",
			 (json_int_t)(end - 1000), "end", (json_int_t)end, "flows", flows, "lost", "hits");
}

static json_t *web1_only(void)
{
	return json_pack("{s:b}", "web1", 1);
}

static struct flowcheck_limits limits(void)
{
	return (struct flowcheck_limits){.now_ms = NOW,
					 .keep_after_ms = NOW - 7 * 24 * 60 * MINUTE,
					 .future_ms = 5 * MINUTE,
					 .rate_records = INT64_MAX,
					 .quota_records = INT64_MAX};
}

static size_t n_flows(json_t *b)
{
	return json_array_size(json_object_get(b, "flows"));
}

TEST(a_batch_within_every_limit_is_kept_as_it_is)
{
	json_t *b = batch(5, NOW - 1000), *copy = json_deep_copy(b), *names = web1_only();
	struct flowcheck_limits l = limits();
	struct store_drops d = {0}, none = {0};
	CHECK(flowcheck_batch(b, names, &l, &d) == 5);
	CHECK(json_equal(b, copy));
	CHECK(memcmp(&d, &none, sizeof(d)) == 0);
	json_decref(b);
	json_decref(copy);
	json_decref(names);
}

TEST(a_clock_eight_days_behind_makes_expired_batches_not_silence)
{
	json_t *b = batch(3, NOW - 8 * 24 * 60 * MINUTE), *names = web1_only();
	json_array_append_new(json_object_get(b, "hits"), hit("web1"));
	json_array_append_new(json_object_get(b, "lost"), json_pack("{s:s,s:i,s:i,s:i}", "endpoint", "web1",
								    "enobufs", 1, "gap", 4, "spool", 0));
	struct flowcheck_limits l = limits();
	struct store_drops d = {0};
	CHECK(flowcheck_batch(b, names, &l, &d) == 0);
	CHECK(n_flows(b) == 0 && json_array_size(json_object_get(b, "hits")) == 0);
	CHECK(json_array_size(json_object_get(b, "lost")) == 1); /* losses are losses still */
	const struct store_drop_count *e = &d.v[STORE_DROP_EXPIRED];
	CHECK(e->batches == 1 && e->records == 4 && e->packets == 6);
	/* A flow of 1970 in a batch of now: expired alone. */
	json_decref(b);
	b = batch(2, NOW);
	json_array_append_new(json_object_get(b, "flows"), flow("web1", 77, 9, 0));
	struct store_drops d1 = {0};
	CHECK(flowcheck_batch(b, names, &l, &d1) == 2 && n_flows(b) == 2);
	CHECK(d1.v[STORE_DROP_EXPIRED].batches == 1 && d1.v[STORE_DROP_EXPIRED].records == 1 &&
	      d1.v[STORE_DROP_EXPIRED].packets == 9);
	/* Without a retention nothing expires. */
	json_decref(b);
	b = batch(3, NOW - 8 * 24 * 60 * MINUTE);
	l.keep_after_ms = 0;
	struct store_drops d2 = {0};
	CHECK(flowcheck_batch(b, names, &l, &d2) == 3 && d2.v[STORE_DROP_EXPIRED].batches == 0);
	json_decref(b);
	json_decref(names);
}

TEST(times_ahead_of_the_controller_become_its_time)
{
	json_t *b = batch(2, NOW), *names = web1_only();
	json_t *far = flow("web1", 99, 1, INT64_C(253402300799999)); /* year 9999 */
	json_array_append_new(json_object_get(b, "flows"), far);
	json_t *near = flow("web1", 98, 1, NOW + MINUTE); /* within the slack: left alone */
	json_array_append_new(json_object_get(b, "flows"), near);
	json_object_set_new(b, "end", json_integer(INT64_C(253402300799999)));
	struct flowcheck_limits l = limits();
	struct store_drops d = {0};
	CHECK(flowcheck_batch(b, names, &l, &d) == 4);
	CHECK(json_integer_value(json_object_get(far, "last")) == NOW);
	CHECK(json_integer_value(json_object_get(far, "first")) == NOW);
	CHECK(json_integer_value(json_object_get(near, "last")) == NOW + MINUTE);
	CHECK(json_integer_value(json_object_get(b, "end")) == NOW);
	CHECK(json_integer_value(json_object_get(b, "start")) <= NOW);
	CHECK(d.v[STORE_DROP_FUTURE].batches == 1 && d.v[STORE_DROP_FUTURE].records == 1);
	json_decref(b);
	json_decref(names);
}

TEST(flows_of_endpoints_the_node_did_not_report_are_not_kept)
{
	json_t *b = batch(2, NOW), *names = web1_only();
	json_array_append_new(json_object_get(b, "flows"), flow("db-1", 5432, 7, NOW)); /* another node's */
	json_array_append_new(json_object_get(b, "flows"), flow("", 1, 1, NOW));
	json_array_append_new(json_object_get(b, "hits"), hit("db-1"));
	json_array_append_new(json_object_get(b, "hits"), hit("web1"));
	json_array_append_new(json_object_get(b, "lost"), json_pack("{s:s,s:i,s:i,s:i}", "endpoint", "db-1",
								    "enobufs", 0, "gap", 3, "spool", 0));
	struct flowcheck_limits l = limits();
	struct store_drops d = {0};
	CHECK(flowcheck_batch(b, names, &l, &d) == 3);
	CHECK(n_flows(b) == 2 && json_array_size(json_object_get(b, "hits")) == 1);
	size_t i;
	json_t *f;
	json_array_foreach (json_object_get(b, "flows"), i, f)
		CHECK_STR(json_string_value(json_object_get(f, "endpoint")), "web1");
	/* Its loss is the node's, not under a name it may not use. */
	CHECK(json_is_null(json_object_get(json_array_get(json_object_get(b, "lost"), 0), "endpoint")));
	const struct store_drop_count *c = &d.v[STORE_DROP_FOREIGN];
	CHECK(c->batches == 1 && c->records == 3 && c->packets == 8);
	json_decref(b);
	json_decref(names);
}

TEST(records_past_the_rate_or_the_quota_are_counted_by_reason)
{
	json_t *names = web1_only();
	struct flowcheck_limits l = limits();
	l.rate_records = 60;
	json_t *b = batch(100, NOW);
	json_array_append_new(json_object_get(b, "hits"), hit("web1"));
	struct store_drops d = {0};
	CHECK(flowcheck_batch(b, names, &l, &d) == 60);
	CHECK(n_flows(b) == 60 && json_array_size(json_object_get(b, "hits")) == 0);
	CHECK(json_integer_value(json_object_get(json_array_get(json_object_get(b, "flows"), 59), "port")) ==
	      60);
	CHECK(d.v[STORE_DROP_RATE].records == 41 && d.v[STORE_DROP_RATE].packets == 80);
	CHECK(d.v[STORE_DROP_QUOTA].records == 0);
	json_decref(b);

	l.quota_records = 50; /* the smaller room: the quota's reason */
	b = batch(100, NOW);
	struct store_drops q = {0};
	CHECK(flowcheck_batch(b, names, &l, &q) == 50);
	CHECK(q.v[STORE_DROP_QUOTA].batches == 1 && q.v[STORE_DROP_QUOTA].records == 50 &&
	      q.v[STORE_DROP_QUOTA].packets == 100);
	CHECK(q.v[STORE_DROP_RATE].records == 0);
	json_decref(b);

	l.quota_records = -3; /* over already (a lowered quota) */
	b = batch(2, NOW);
	struct store_drops z = {0};
	CHECK(flowcheck_batch(b, names, &l, &z) == 0 && z.v[STORE_DROP_QUOTA].records == 2);
	json_decref(b);
	json_decref(names);
}

TEST(a_batch_the_rate_has_no_room_for_is_counted_whole)
{
	json_t *b = batch(3, NOW);
	json_array_append_new(json_object_get(b, "hits"), hit("web1"));
	json_array_append_new(json_object_get(b, "lost"), json_pack("{s:s,s:i,s:i,s:i}", "endpoint", "web1",
								    "enobufs", 1, "gap", 4, "spool", 5));
	struct store_drops d = {0};
	flowcheck_drop_all(b, STORE_DROP_RATE, &d);
	flowcheck_drop_all(b, STORE_DROP_RATE, &d);
	const struct store_drop_count *c = &d.v[STORE_DROP_RATE];
	CHECK(c->batches == 2 && c->records == 8 && c->packets == 2 * (6 + 9));
	json_decref(b);
}

TEST(the_rate_allowance_fills_at_its_rate_up_to_its_burst)
{
	struct flowcheck_bucket b = {0};
	CHECK(flowcheck_bucket_fill(&b, 1000, 10, 600) == 600); /* full at first use */
	flowcheck_bucket_take(&b, 600);
	CHECK(flowcheck_bucket_fill(&b, 1000, 10, 600) == 0);
	CHECK(flowcheck_bucket_fill(&b, 2000, 10, 600) == 10);
	CHECK(flowcheck_bucket_fill(&b, 3000, 10, 600) == 20);
	CHECK(flowcheck_bucket_fill(&b, 3000 + 3600 * 1000, 10, 600) == 600);
	flowcheck_bucket_take(&b, 1000000);
	CHECK(flowcheck_bucket_fill(&b, 3000 + 3600 * 1000, 10, 600) == 0);
}

int main(void)
{
	return test_main();
}
