/* Holding a node's flow batch to the node and to the limits (see flowcheck.h). */
#include "flowcheck.h"

static int64_t member(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static void add(struct store_drops *drops, enum store_drop why, int64_t records, int64_t packets)
{
	struct store_drop_count *c = &drops->v[why];
	c->records += records;
	c->packets += packets;
}

/* The packets of a list of flows (each within the schema's 2^40: a list
 * of PROTO_FLOWS_MAX sums far below int64's end). */
static int64_t packets_of(json_t *flows)
{
	int64_t n = 0;
	size_t i;
	json_t *f;
	json_array_foreach (flows, i, f)
		n += member(f, "count");
	return n;
}

/* Sets obj's time key to now when it is past the slack; true when it was. */
static bool clamp_time(json_t *obj, const char *key, const struct flowcheck_limits *l)
{
	if (member(obj, key) <= l->now_ms + l->future_ms)
		return false;
	json_object_set_new(obj, key, json_integer(l->now_ms));
	return true;
}

/* Keeps the items of list that keep() says yes to, in order. */
static void filter(json_t *list, bool (*keep)(json_t *item, void *data), void *data)
{
	size_t out = 0;
	for (size_t i = 0; i < json_array_size(list); i++) {
		json_t *item = json_array_get(list, i);
		if (!keep(item, data))
			continue;
		if (out != i)
			json_array_set(list, out, item);
		out++;
	}
	while (json_array_size(list) > out)
		json_array_remove(list, json_array_size(list) - 1);
}

struct pass {
	json_t *endpoints;
	const struct flowcheck_limits *l;
	struct store_drops *drops;
	int64_t allowed, kept; /* records */
	enum store_drop over;  /* why records past allowed go */
	bool is_flow;
};

static bool keep_record(json_t *item, void *data)
{
	struct pass *p = data;
	int64_t packets = p->is_flow ? member(item, "count") : 0;
	if (!json_object_get(p->endpoints, json_string_value(json_object_get(item, "endpoint")))) {
		add(p->drops, STORE_DROP_FOREIGN, 1, packets);
		return false;
	}
	/* A window older than the retention would be deleted at once. */
	if (p->is_flow && p->l->keep_after_ms && member(item, "last") < p->l->keep_after_ms) {
		add(p->drops, STORE_DROP_EXPIRED, 1, packets);
		return false;
	}
	if (p->kept >= p->allowed) {
		add(p->drops, p->over, 1, packets);
		return false;
	}
	if (p->is_flow) {
		bool ahead = clamp_time(item, "first", p->l);
		ahead |= clamp_time(item, "last", p->l);
		if (member(item, "first") > member(item, "last"))
			json_object_set(item, "first", json_object_get(item, "last"));
		if (ahead)
			add(p->drops, STORE_DROP_FUTURE, 1, 0);
	}
	p->kept++;
	return true;
}

int64_t flowcheck_batch(json_t *body, json_t *endpoints, const struct flowcheck_limits *l,
			struct store_drops *drops)
{
	struct store_drops d = {0};
	json_t *flows = json_object_get(body, "flows"), *hits = json_object_get(body, "hits");
	/* Losses are the node's in any case; an endpoint it did not report
	 * is not named. */
	size_t i;
	json_t *lost;
	json_array_foreach (json_object_get(body, "lost"), i, lost) {
		json_t *ep = json_object_get(lost, "endpoint");
		if (json_is_string(ep) && !json_object_get(endpoints, json_string_value(ep)))
			json_object_set_new(lost, "endpoint", json_null());
	}
	if (clamp_time(body, "end", l))
		d.v[STORE_DROP_FUTURE].batches = 1;
	clamp_time(body, "start", l);
	if (member(body, "start") > member(body, "end"))
		json_object_set(body, "start", json_object_get(body, "end"));
	int64_t kept = 0;
	if (l->keep_after_ms && member(body, "end") < l->keep_after_ms) {
		d.v[STORE_DROP_EXPIRED].batches = 1;
		add(&d, STORE_DROP_EXPIRED, (int64_t)(json_array_size(flows) + json_array_size(hits)),
		    packets_of(flows));
		json_array_clear(flows);
		json_array_clear(hits);
	} else {
		struct pass p = {.endpoints = endpoints, .l = l, .drops = &d, .is_flow = true};
		p.allowed = l->rate_records < l->quota_records ? l->rate_records : l->quota_records;
		p.allowed = p.allowed > 0 ? p.allowed : 0;
		p.over = l->quota_records <= l->rate_records ? STORE_DROP_QUOTA : STORE_DROP_RATE;
		filter(flows, keep_record, &p);
		p.is_flow = false;
		filter(hits, keep_record, &p); /* after the flows: the report comes first */
		kept = p.kept;
	}
	for (int why = 0; why < STORE_DROP_COUNT; why++) {
		struct store_drop_count *c = &d.v[why];
		if (c->records && !c->batches)
			c->batches = 1;
		drops->v[why].batches += c->batches;
		drops->v[why].records += c->records;
		drops->v[why].packets += c->packets;
	}
	return kept;
}

void flowcheck_drop_all(json_t *body, enum store_drop why, struct store_drops *drops)
{
	json_t *flows = json_object_get(body, "flows"), *hits = json_object_get(body, "hits");
	int64_t packets = packets_of(flows);
	size_t i;
	json_t *lost;
	json_array_foreach (json_object_get(body, "lost"), i, lost)
		packets += member(lost, "gap") + member(lost, "spool");
	drops->v[why].batches++;
	add(drops, why, (int64_t)(json_array_size(flows) + json_array_size(hits)), packets);
}

int64_t flowcheck_bucket_fill(struct flowcheck_bucket *b, int64_t now_ms, int64_t rate, int64_t burst)
{
	if (!b->at_ms) {
		b->records = (double)burst;
	} else if (now_ms > b->at_ms) {
		b->records += (double)(now_ms - b->at_ms) * (double)rate / 1000.0;
		if (b->records > (double)burst)
			b->records = (double)burst;
	}
	b->at_ms = now_ms > 0 ? now_ms : 1;
	return (int64_t)b->records;
}

void flowcheck_bucket_take(struct flowcheck_bucket *b, int64_t n)
{
	b->records -= (double)n;
	if (b->records < 0)
		b->records = 0;
}
