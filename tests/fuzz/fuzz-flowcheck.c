/* Fuzz target: the controller's checks of a FLOWS batch (controller/
 * flowcheck.h) before it is stored. The input is a line of limits and the
 * node's endpoint names, then the body as an agent sends it:
 *
 *   NOW KEEP_AFTER FUTURE RATE QUOTA [NAME...]
 *   {"v":1,"epoch":...}
 *
 * Only a body the wire schema takes (proto_decode) is checked, as in the
 * controller. Whatever it holds: every record is kept or counted once as
 * dropped (what is dated ahead is kept and counted as such), what is kept
 * is the node's, within the limits, dated no later than the slack allows
 * and in order; the rate allowance stays within its burst. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/proto.h"
#include "flowcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int64_t member(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static int64_t packets_of(json_t *flows)
{
	int64_t n = 0;
	size_t i;
	json_t *f;
	json_array_foreach (flows, i, f)
		n += member(f, "count");
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *nl = memchr(data, '\n', size);
	if (!nl || nl - (const char *)data > 4096)
		return 0;
	char head[4097];
	memcpy(head, data, (size_t)(nl - (const char *)data));
	head[nl - (const char *)data] = '\0';
	long long now, keep_after, future, rate, quota;
	int used = 0;
	if (sscanf(head, "%lld %lld %lld %lld %lld%n", &now, &keep_after, &future, &rate, &quota, &used) != 5)
		return 0;
	/* As the controller gives them: its clock, the retention's start (or
	 * 0), a slack of minutes, what a rate and a quota leave. */
	if (now < 0 || now > PROTO_FLOWS_TIME_MAX || keep_after < 0 || keep_after > now || future < 0 ||
	    future > 86400000 || rate < 0 || quota < 0 || rate > (INT64_C(1) << 40) ||
	    quota > (INT64_C(1) << 40))
		return 0;
	json_t *names = json_object();
	for (char *save = NULL, *w = strtok_r(head + used, " ", &save); w; w = strtok_r(NULL, " ", &save))
		json_object_set_new(names, w, json_true());

	struct proto_msg m;
	char err[256];
	const char *body = nl + 1;
	if (proto_decode("FLOWS", 5, body, size - (size_t)(body - (const char *)data), &m, err, sizeof(err)) <
	    0) {
		json_decref(names);
		return 0;
	}
	json_t *flows = json_object_get(m.body, "flows"), *hits = json_object_get(m.body, "hits");
	int64_t records = (int64_t)(json_array_size(flows) + json_array_size(hits)),
		packets = packets_of(flows);

	struct store_drops all = {0};
	flowcheck_drop_all(m.body, STORE_DROP_RATE, &all);
	if (all.v[STORE_DROP_RATE].batches != 1 || all.v[STORE_DROP_RATE].records != records)
		abort();

	struct flowcheck_limits l = {.now_ms = now,
				     .keep_after_ms = keep_after,
				     .future_ms = future,
				     .rate_records = rate,
				     .quota_records = quota};
	struct store_drops drops = {0};
	int64_t kept = flowcheck_batch(m.body, names, &l, &drops);
	int64_t dropped = 0, dropped_packets = 0;
	for (int why = 0; why < STORE_DROP_COUNT; why++) {
		const struct store_drop_count *c = &drops.v[why];
		if (c->batches < 0 || c->batches > 1 || c->records < 0 || c->packets < 0 ||
		    (c->records && !c->batches))
			abort();
		if (why != STORE_DROP_FUTURE) {
			dropped += c->records;
			dropped_packets += c->packets;
		}
	}
	/* Every record kept, or dropped once. */
	int64_t left = (int64_t)(json_array_size(flows) + json_array_size(hits));
	if (kept != left || kept + dropped != records || packets_of(flows) + dropped_packets != packets)
		abort();
	if (kept > (rate < quota ? rate : quota))
		abort();
	if (drops.v[STORE_DROP_FUTURE].records > kept)
		abort();
	/* What is kept is the node's, dated in order and not past the slack. */
	int64_t latest = now + future;
	if (member(m.body, "end") > latest || member(m.body, "start") > member(m.body, "end"))
		abort();
	size_t i;
	json_t *f;
	json_array_foreach (flows, i, f) {
		if (!json_object_get(names, json_string_value(json_object_get(f, "endpoint"))) ||
		    member(f, "last") > latest || member(f, "first") > member(f, "last") ||
		    (keep_after && member(f, "last") < keep_after))
			abort();
	}
	json_array_foreach (hits, i, f)
		if (!json_object_get(names, json_string_value(json_object_get(f, "endpoint"))))
			abort();
	json_t *lost;
	json_array_foreach (json_object_get(m.body, "lost"), i, lost) {
		json_t *ep = json_object_get(lost, "endpoint");
		if (json_is_string(ep) && !json_object_get(names, json_string_value(ep)))
			abort();
	}

	/* The rate allowance: full at first, never past its burst or below 0. */
	struct flowcheck_bucket b = {0};
	int64_t burst = rate * 60, t = 1000;
	for (int k = 0; k < 4; k++) {
		int64_t have = flowcheck_bucket_fill(&b, t, rate, burst);
		if (have < 0 || have > burst)
			abort();
		flowcheck_bucket_take(&b, kept + k);
		t += (int64_t)(now % 5000) * k;
	}

	proto_msg_release(&m);
	json_decref(names);
	return 0;
}
