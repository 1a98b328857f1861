/* Flow intake and retention (see intake.h). */
#include <stdio.h>
#include <stdlib.h>

#include "bulkhead/escape.h"
#include "bulkhead/log.h"
#include "bulkhead/proto.h"
#include "bulkhead/vocab.h"
#include "flowcheck.h"
#include "flownames.h"
#include "intake.h"

/* How often flows past the retention are deleted, in chunks this far
 * apart (other work runs between them); a chunk's rows are adjusted so
 * that it takes about PRUNE_CHUNK_BUDGET_MS. */
#define PRUNE_MS	      (3600 * 1000)
#define PRUNE_CHUNK_GAP_MS    50
#define PRUNE_CHUNK_BUDGET_MS 20
#define PRUNE_ROWS_MIN	      100
#define PRUNE_ROWS_MAX	      20000
/* A batch's key outlives its flows by this much (by the controller's own
 * receive time), so a clock stepped back cannot let a resent batch whose
 * key was pruned be stored twice. */
#define KEY_MARGIN_MS (86400 * 1000)
/* How far ahead of the controller's clock a flow's time may be; later
 * times are the controller's (retention would never delete them). */
#define FUTURE_MS (5 * 60 * 1000)

struct intake {
	struct store *store;
	struct compiler *compiler;
	struct intake_options o;
	int64_t last_prune_ms, last_chunk_ms; /* monotonic; 0: not yet */
	bool prune_pending;		      /* more to delete: another chunk soon */
	int64_t pruned_rows, chunk_rows;
	struct {
		uint64_t batches, again, store_failed, expired, rejected, records_dropped;
		uint64_t packets[3],
		    events_lost; /* stored packets by verdict (vocab.h order); losses reported */
	} count;
};

/* What a stored batch adds to the packet and loss counters. */
static void count_stored(struct intake *i, json_t *body)
{
	size_t k;
	json_t *e;
	json_array_foreach (json_object_get(body, "flows"), k, e) {
		int v = vocab_find(report_verdict_words, json_string_value(json_object_get(e, "verdict")));
		if (v >= 0 && v < 3)
			i->count.packets[v] += (uint64_t)json_integer_value(json_object_get(e, "count"));
	}
	json_array_foreach (json_object_get(body, "lost"), k, e)
		i->count.events_lost += (uint64_t)(json_integer_value(json_object_get(e, "enobufs")) +
						   json_integer_value(json_object_get(e, "gap")) +
						   json_integer_value(json_object_get(e, "spool")));
}

struct intake *intake_new(struct store *s, struct compiler *c, const struct intake_options *o)
{
	struct intake *i = xcalloc(1, sizeof(*i));
	i->store = s;
	i->compiler = c;
	i->o = *o;
	i->chunk_rows = 1000;
	return i;
}

void intake_free(struct intake *i)
{
	free(i);
}

/* Flows older than this (unix ms) are not kept; 0: all are. */
static int64_t keep_after(const struct intake *i)
{
	return i->o.retention_ms ? clock_wall_ms() - i->o.retention_ms : 0;
}

void intake_tick(struct intake *i, int64_t now)
{
	if (!i->o.retention_ms)
		return;
	bool due = !i->last_prune_ms || now - i->last_prune_ms >= PRUNE_MS;
	if (!due && !(i->prune_pending && now - i->last_chunk_ms >= PRUNE_CHUNK_GAP_MS))
		return;
	if (due) {
		i->last_prune_ms = now;
		i->pruned_rows = 0;
	}
	int64_t removed = 0, after = keep_after(i);
	int r = store_prune_flows(i->store, after, after - KEY_MARGIN_MS, i->chunk_rows, &removed);
	int64_t took = clock_mono_ms() - now;
	i->last_chunk_ms = clock_mono_ms();
	if (r < 0) {
		log_error("pruning flows older than %lld s: %s", (long long)(i->o.retention_ms / 1000),
			  store_error(i->store));
		i->prune_pending = false;
		return;
	}
	/* The loop waits for a chunk: keep each near its budget. */
	if (took > PRUNE_CHUNK_BUDGET_MS && i->chunk_rows / 2 >= PRUNE_ROWS_MIN)
		i->chunk_rows /= 2;
	else if (r > 0 && took < PRUNE_CHUNK_BUDGET_MS / 4 && i->chunk_rows * 2 <= PRUNE_ROWS_MAX)
		i->chunk_rows *= 2;
	i->pruned_rows += removed;
	i->prune_pending = r > 0;
	if (!i->prune_pending && i->pruned_rows)
		log_info("pruned %lld flow row(s) older than %lld s", (long long)i->pruned_rows,
			 (long long)(i->o.retention_ms / 1000));
}

static json_t *flows_ack(json_int_t epoch, json_int_t seq, const char *rejected)
{
	json_t *body = json_pack("{s:I,s:I}", "epoch", epoch, "seq", seq);
	if (rejected)
		json_object_set_new(body, "rejected", json_string(rejected));
	return body;
}

/* What was not stored of a node's batch: logged once a minute a reason. */
static void log_drops(struct intake *i, struct node *n, const struct store_drops *d)
{
	static const char *const why[STORE_DROP_COUNT] = {
	    [STORE_DROP_RATE] = "over the node's rate limit (--flow-rate)",
	    [STORE_DROP_QUOTA] = "over the node's quota (--flow-quota)",
	    [STORE_DROP_REJECTED] = "rejected",
	    [STORE_DROP_EXPIRED] = "older than the retention (is the node's clock behind?)",
	    [STORE_DROP_FUTURE] =
		"dated in the future, stored with the controller's time (is the node's clock "
		"ahead?)",
	    [STORE_DROP_FOREIGN] = "naming endpoints the node did not report",
	};
	for (int r = 0; r < STORE_DROP_COUNT; r++) {
		if (!d->v[r].batches || r == STORE_DROP_REJECTED)
			continue;
		if (r != STORE_DROP_FUTURE)
			i->count.records_dropped += (uint64_t)d->v[r].records;
		if (r == STORE_DROP_EXPIRED)
			i->count.expired++;
		ratelimit_log(&n->drop_log[r], LOG_LEVEL_WARN,
			      "node %s: %lld flow record(s) (%lld packets) %s%s; shown by `bulkhead flows` "
			      "(logged once "
			      "a minute)",
			      n->name, (long long)d->v[r].records, (long long)d->v[r].packets, why[r],
			      r == STORE_DROP_FUTURE ? "" : ", not stored");
	}
}

/* The records n's rate allows now, its batch's key taken first (a batch
 * key is a row too): < 0 when there is no room even for that. */
static int64_t room(struct intake *i, struct node *n)
{
	if (!i->o.rate)
		return INT64_MAX;
	return flowcheck_bucket_fill(&n->flow_bucket, clock_mono_ms(), i->o.rate,
				     i->o.rate * INTAKE_BURST_S) -
	       1;
}

json_t *intake_flows(struct intake *i, struct node *n, json_t *body)
{
	json_int_t epoch = json_integer_value(json_object_get(body, "epoch")),
		   seq = json_integer_value(json_object_get(body, "seq"));
	int64_t used = 0;
	int r = store_flow_batch_seen(i->store, n->name, epoch, seq);
	if (r == 0)
		r = store_flow_records(i->store, n->name, &used);
	if (r < 0)
		goto fail;
	if (r == 1) { /* resent: acknowledged again, nothing counted twice */
		i->count.again++;
		return flows_ack(epoch, seq, NULL);
	}
	int64_t now = clock_wall_ms(), allowed = room(i, n);
	struct store_drops drops = {0};
	if (allowed < 0) { /* not even for its key: counted, nothing stored */
		flowcheck_drop_all(body, STORE_DROP_RATE, &drops);
		if (store_add_flow_drops(i->store, n->name, &drops, now) < 0)
			goto fail;
		log_drops(i, n, &drops);
		return flows_ack(epoch, seq, NULL);
	}
	/* The names it reported: its endpoints, no other node's. */
	json_t *names = json_object();
	size_t k;
	json_t *e;
	json_array_foreach (n->endpoints, k, e)
		json_object_set_new(names, json_string_value(json_object_get(e, "name")), json_true());
	struct flowcheck_limits l = {
	    .now_ms = now,
	    .keep_after_ms = keep_after(i),
	    .future_ms = FUTURE_MS,
	    .rate_records = allowed,
	    .quota_records = i->o.quota ? i->o.quota - used : INT64_MAX,
	};
	int64_t kept = flowcheck_batch(body, names, &l, &drops);
	json_decref(names);
	flownames_add(i->compiler, n->name, body);
	r = store_add_flow_batch(i->store, n->name, body, &drops, now);
	if (r < 0)
		goto fail;
	if (r == 1) {
		i->count.batches++;
		count_stored(i, body);
		flowcheck_bucket_take(&n->flow_bucket, kept + 1);
		log_drops(i, n, &drops);
	} else {
		i->count.again++;
	}
	return flows_ack(epoch, seq, NULL);
fail:
	i->count.store_failed++;
	log_error("node %s: storing flow batch %lld: %s", n->name, (long long)seq, store_error(i->store));
	return NULL;
}

json_t *intake_malformed(struct intake *i, struct node *n, const void *body, size_t len, const char *why)
{
	int64_t epoch, seq;
	if (proto_flows_key(body, len, &epoch, &seq) < 0)
		return NULL;
	i->count.rejected++;
	struct store_drops drops = {0};
	drops.v[STORE_DROP_REJECTED].batches = 1;
	int64_t now = clock_wall_ms();
	json_t *key =
	    json_pack("{s:I,s:I,s:I,s:I,s:[],s:[]}", "epoch", (json_int_t)epoch, "seq", (json_int_t)seq,
		      "start", (json_int_t)now, "end", (json_int_t)now, "flows", "lost");
	/* Stored as a batch without records, so that a resent copy counts
	 * once; past the rate, not even that. */
	bool keyed = room(i, n) >= 0;
	int r = keyed ? store_add_flow_batch(i->store, n->name, key, &drops, now)
		      : store_add_flow_drops(i->store, n->name, &drops, now);
	if (r < 0)
		log_error("node %s: recording rejected flow batch %lld: %s", n->name, (long long)seq,
			  store_error(i->store));
	else if (keyed)
		flowcheck_bucket_take(&n->flow_bucket, 1);
	json_decref(key);
	ratelimit_log(
	    &n->drop_log[STORE_DROP_REJECTED], LOG_LEVEL_WARN,
	    "node %s: flow batch %lld/%lld rejected: %s (logged once a minute; `bulkhead flows` counts them)",
	    n->name, (long long)epoch, (long long)seq, ESCAPED(why));
	return flows_ack(epoch, seq, why);
}

void intake_counters(struct intake *i, json_t *c)
{
	json_object_update_new(
	    c, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "flow_batches_stored", (json_int_t)i->count.batches,
			 "flow_batches_resent", (json_int_t)i->count.again, "flow_batches_not_stored",
			 (json_int_t)i->count.store_failed, "flow_batches_expired",
			 (json_int_t)i->count.expired, "flow_batches_rejected", (json_int_t)i->count.rejected,
			 "flow_records_dropped", (json_int_t)i->count.records_dropped));
	json_object_update_new(c,
			       json_pack("{s:I,s:I,s:I,s:I}", "flow_packets_allowed",
					 (json_int_t)i->count.packets[VERDICT_ACCEPT], "flow_packets_denied",
					 (json_int_t)i->count.packets[VERDICT_DROP], "flow_packets_audited",
					 (json_int_t)i->count.packets[VERDICT_AUDIT], "flow_events_lost",
					 (json_int_t)i->count.events_lost));
}
