/* The flows of a period judged again under a new document (see preview.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/compile.h"
#include "bulkhead/eval.h"
#include "bulkhead/log.h"
#include "admin.h"
#include "flownames.h"
#include "preview.h"

int64_t preview_observed_ms(const struct preview_revision *revs, size_t n, int64_t since_ms, int64_t until_ms)
{
	int64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		int64_t from = revs[i].from_ms > since_ms ? revs[i].from_ms : since_ms;
		int64_t to = i + 1 < n && revs[i + 1].from_ms < until_ms ? revs[i + 1].from_ms : until_ms;
		if (revs[i].observe_all && to > from)
			total += to - from;
	}
	return total;
}

/* ---- one flow of the period: every report of one (src, dst, protocol,
 * port) added up by what it says ---- */

struct seen {
	int64_t last, count;
	const char *rule, *verdict; /* of the newest report */
};

struct pflow {
	json_t *row;		     /* the newest report of it (borrowed from the rows) */
	struct seen drop;	     /* deny reports, at either end */
	struct seen pass[DIR_COUNT]; /* allow and audit reports, by the reporting end's direction */
	bool audited;
	bool dst_inside; /* its destination was an endpoint (named as one) */
	int64_t last;
};

static void seen_add(struct seen *s, json_t *row)
{
	int64_t last = json_integer_value(json_object_get(row, "last"));
	s->count += json_integer_value(json_object_get(row, "count"));
	if (last >= s->last) {
		s->last = last;
		s->rule = json_string_value(json_object_get(row, "rule"));
		s->verdict = json_string_value(json_object_get(row, "verdict"));
	}
}

/* "SRC DST PROTO PORT TYPE CODE": the flow a row belongs to. */
static void flow_key(json_t *row, char *buf, size_t n)
{
	json_t *port = json_object_get(row, "port"), *type = json_object_get(row, "icmp_type"),
	       *code = json_object_get(row, "icmp_code");
	snprintf(buf, n, "%s %s %s %lld %lld %lld", json_string_value(json_object_get(row, "src")),
		 json_string_value(json_object_get(row, "dst")),
		 json_string_value(json_object_get(row, "proto")),
		 json_is_integer(port) ? (long long)json_integer_value(port) : -1LL,
		 json_is_integer(type) ? (long long)json_integer_value(type) : -1LL,
		 json_is_integer(code) ? (long long)json_integer_value(code) : -1LL);
}

/* What became of it last: the drop, or the end that delivered it. That is
 * the destination's ingress where the destination is an endpoint (its
 * source's egress let through also what the ingress then dropped, and the
 * two ends' times come from two agents' clocks), else the source's egress
 * (an address outside the inventory has no table). An endpoint's ingress
 * that never reported it (a window still on its way) leaves the egress. */
static const struct seen *pflow_outcome(const struct pflow *f, bool *blocked)
{
	const struct seen *pass = &f->pass[DIR_EGRESS];
	if (f->dst_inside || f->pass[DIR_INGRESS].last)
		pass = &f->pass[DIR_INGRESS];
	*blocked = f->drop.last && f->drop.last >= pass->last;
	if (!*blocked && !pass->last)
		pass = &f->pass[DIR_EGRESS];
	return *blocked ? &f->drop : pass;
}

/* ---- judging under the new document ---- */

struct judge {
	const struct policy_doc *doc;
	const struct inventory *inv;
	const char **nodes; /* compiled so far, beside their bundles */
	struct bundle **bundles;
	size_t n;
	bool failed; /* a bundle could not be compiled (out of memory) */
};

static const struct bundle *judge_bundle(struct judge *j, const char *node)
{
	for (size_t i = 0; i < j->n; i++)
		if (strcmp(j->nodes[i], node) == 0)
			return j->bundles[i];
	struct bundle *b = compile_bundle(j->doc, j->inv, node);
	if (!b) {
		j->failed = true;
		return NULL;
	}
	j->nodes = xrealloc(j->nodes, (j->n + 1) * sizeof(*j->nodes));
	j->bundles = xrealloc(j->bundles, (j->n + 1) * sizeof(*j->bundles));
	j->nodes[j->n] = node;
	j->bundles[j->n++] = b;
	return b;
}

static bool packet_of(json_t *row, struct packet *p)
{
	const char *proto = json_string_value(json_object_get(row, "proto"));
	json_t *port = json_object_get(row, "port"), *type = json_object_get(row, "icmp_type"),
	       *code = json_object_get(row, "icmp_code");
	char *end;
	*p = (struct packet){0};
	if (addr_parse(json_string_value(json_object_get(row, "src")), &p->src) < 0 ||
	    addr_parse(json_string_value(json_object_get(row, "dst")), &p->dst) < 0 ||
	    p->src.family != p->dst.family || !proto)
		return false;
	if (!proto_lookup(proto, strlen(proto), &p->proto)) {
		long v = strtol(proto, &end, 10);
		if (*end || end == proto || v < 0 || v > 255)
			return false;
		p->proto = (uint8_t)v;
	}
	if (json_is_integer(port))
		p->dport = (uint16_t)json_integer_value(port);
	if (json_is_integer(type))
		p->icmp_type = (uint8_t)json_integer_value(type);
	if (json_is_integer(code))
		p->icmp_code = (uint8_t)json_integer_value(code);
	return true;
}

static json_t *side_json(bool present, const struct endpoint *ep, const struct eval_result *r)
{
	if (!present)
		return json_null();
	char name[512];
	snprintf(name, sizeof(name), "%s/%s", ep->node, ep->name);
	return json_pack("{s:s,s:s,s:s}", "endpoint", name, "verdict", verdict_report_name(r->verdict),
			 "rule", r->reason);
}

/* The rule that decides the path: the end that drops (the source's first),
 * else the end that audits, else the destination's, else the source's. */
static const char *deciding_rule(const struct path_result *r)
{
	if (r->has_egress && r->egress.verdict == VERDICT_DROP)
		return r->egress.reason;
	if (r->has_ingress && r->ingress.verdict == VERDICT_DROP)
		return r->ingress.reason;
	if (r->has_egress && r->egress.verdict == VERDICT_AUDIT)
		return r->egress.reason;
	if (r->has_ingress)
		return r->ingress.reason;
	return r->has_egress ? r->egress.reason : NULL;
}

enum change { CHANGE_BLOCKED, CHANGE_ALLOWED, CHANGE_UNCHANGED, CHANGE_COUNT };
static const char *const change_words[] = {"newly_blocked", "newly_allowed", "unchanged"};

struct judged {
	enum change change;
	int64_t last;
	json_t *out;
};

static void end_names(struct judge *j, const struct bh_addr *a, json_t *out, const char *side)
{
	char key[32], endpoint[512], groups[4096];
	flownames_end(j->inv, j->doc, a, endpoint, sizeof(endpoint), groups, sizeof(groups));
	snprintf(key, sizeof(key), "%s_endpoint", side);
	json_object_set_new(out, key, endpoint[0] ? json_string(endpoint) : json_null());
	snprintf(key, sizeof(key), "%s_groups", side);
	json_object_set_new(out, key, json_string(groups));
}

/* f judged: NULL when its row cannot be read as a packet. */
static json_t *judge_flow(struct judge *j, const struct pflow *f, enum change *change)
{
	struct packet pkt;
	if (!packet_of(f->row, &pkt))
		return NULL;
	const struct endpoint *src = inventory_find_by_addr(j->inv, &pkt.src),
			      *dst = inventory_find_by_addr(j->inv, &pkt.dst);
	const struct bundle *sb = src ? judge_bundle(j, src->node) : NULL,
			    *db = dst ? judge_bundle(j, dst->node) : NULL;
	struct path_result res;
	eval_path(sb, sb ? bundle_find_endpoint(sb, src->name) : NULL, db,
		  db ? bundle_find_endpoint(db, dst->name) : NULL, &pkt, &res);
	bool blocked;
	const struct seen *was = pflow_outcome(f, &blocked);
	const char *was_verdict = blocked      ? verdict_report_name(VERDICT_DROP)
				  : f->audited ? verdict_report_name(VERDICT_AUDIT)
					       : verdict_report_name(VERDICT_ACCEPT);
	*change = blocked == res.delivered ? (blocked ? CHANGE_ALLOWED : CHANGE_BLOCKED) : CHANGE_UNCHANGED;
	json_t *row = f->row;
	json_t *out = json_pack("{s:s,s:O,s:O,s:O,s:O,s:O,s:O,s:s,s:s?,s:s,s:s?,s:o,s:o,s:I,s:I}", "change",
				change_words[*change], "src", json_object_get(row, "src"), "dst",
				json_object_get(row, "dst"), "proto", json_object_get(row, "proto"), "port",
				json_object_get(row, "port"), "icmp_type", json_object_get(row, "icmp_type"),
				"icmp_code", json_object_get(row, "icmp_code"), "was", was_verdict,
				"was_rule", was->rule, "now", verdict_report_name(res.verdict), "rule",
				deciding_rule(&res), "egress", side_json(res.has_egress, src, &res.egress),
				"ingress", side_json(res.has_ingress, dst, &res.ingress), "count",
				(json_int_t)was->count, "last", (json_int_t)f->last);
	if (out) {
		end_names(j, &pkt.src, out, "src");
		end_names(j, &pkt.dst, out, "dst");
	}
	return out;
}

static int judged_cmp(const void *a, const void *b)
{
	const struct judged *x = a, *y = b;
	if (x->change != y->change)
		return x->change < y->change ? -1 : 1;
	return x->last > y->last ? -1 : x->last < y->last;
}

json_t *preview_judge(const struct policy_doc *doc, const struct inventory *inv, json_t *rows)
{
	/* Every report, added to its flow. */
	json_t *index = json_object(); /* key -> position in flows */
	struct pflow *flows = NULL;
	size_t n = 0, i;
	json_t *row;
	json_array_foreach (rows, i, row) {
		char key[512];
		flow_key(row, key, sizeof(key));
		json_t *at = json_object_get(index, key);
		struct pflow *f;
		if (at) {
			f = &flows[json_integer_value(at)];
		} else {
			flows = xrealloc(flows, (n + 1) * sizeof(*flows));
			f = &flows[n];
			*f = (struct pflow){0};
			json_object_set_new(index, key, json_integer((json_int_t)n++));
		}
		int v = vocab_find(report_verdict_words, json_string_value(json_object_get(row, "verdict")));
		int dir = vocab_find(direction_words, json_string_value(json_object_get(row, "direction")));
		int64_t last = json_integer_value(json_object_get(row, "last"));
		if (v == VERDICT_DROP)
			seen_add(&f->drop, row);
		else if (v >= 0 && dir >= 0)
			seen_add(&f->pass[dir], row);
		f->audited |= v == VERDICT_AUDIT;
		f->dst_inside |= json_is_string(json_object_get(row, "dst_endpoint"));
		if (!f->row || last > f->last) {
			f->row = row;
			f->last = last;
		}
	}
	json_decref(index);

	struct judge j = {.doc = doc, .inv = inv};
	struct judged *out = xcalloc(n ? n : 1, sizeof(*out));
	size_t m = 0;
	int64_t counts[CHANGE_COUNT] = {0};
	for (i = 0; i < n && !j.failed; i++) {
		enum change c;
		json_t *o = judge_flow(&j, &flows[i], &c);
		if (!o)
			continue;
		counts[c]++;
		out[m++] = (struct judged){.change = c, .last = flows[i].last, .out = o};
	}
	qsort(out, m, sizeof(*out), judged_cmp);
	json_t *list = json_array();
	for (i = 0; i < m; i++)
		json_array_append_new(list, out[i].out);
	free(out);
	free(flows);
	for (i = 0; i < j.n; i++)
		bundle_free(j.bundles[i]);
	free(j.bundles);
	free(j.nodes);
	if (j.failed) {
		json_decref(list);
		return NULL;
	}
	return json_pack("{s:{s:I,s:I,s:I},s:o}", "counts", "newly_blocked",
			 (json_int_t)counts[CHANGE_BLOCKED], "newly_allowed",
			 (json_int_t)counts[CHANGE_ALLOWED], "unchanged",
			 (json_int_t)counts[CHANGE_UNCHANGED], "flows", list);
}

/* ---- reading the period ---- */

struct rev_list {
	int64_t *rev, *time;
	size_t n;
};

static void add_rev(void *data, const struct store_revision *r)
{
	struct rev_list *l = data;
	l->rev = xrealloc(l->rev, (l->n + 1) * sizeof(*l->rev));
	l->time = xrealloc(l->time, (l->n + 1) * sizeof(*l->time));
	l->rev[l->n] = r->revision;
	l->time[l->n++] = r->time;
}

/* Whether a stored document (one that validated) says "observe": "all". */
static bool document_observes_all(const char *document)
{
	json_t *root = json_loads(document, 0, NULL);
	bool all =
	    vocab_find(observe_words, json_string_value(json_object_get(root, "observe"))) == OBSERVE_ALL;
	json_decref(root);
	return all;
}

/* The revisions in force during [since, until), oldest first, into *out
 * (malloc()ed). 0 or -EIO. */
static int revisions_in_force(struct store *s, int64_t since_ms, int64_t until_ms,
			      struct preview_revision **out, size_t *n_out)
{
	struct rev_list l = {0};
	int r = store_each_revision(s, add_rev, &l); /* newest first */
	struct preview_revision *v = xcalloc(l.n ? l.n : 1, sizeof(*v));
	size_t n = 0;
	for (size_t k = l.n; r == 0 && k-- > 0;) {
		int64_t from = l.time[k] * 1000;
		/* One in force at since (the newest from before it), and those after. */
		bool superseded = k > 0 && l.time[k - 1] * 1000 <= since_ms;
		if (superseded || from >= until_ms)
			continue;
		struct store_revision sr = {0};
		r = store_get_revision(s, l.rev[k], &sr);
		if (r < 0)
			break;
		v[n++] = (struct preview_revision){.from_ms = from,
						   .observe_all = document_observes_all(sr.document)};
		store_revision_release(&sr);
	}
	free(l.rev);
	free(l.time);
	if (r < 0) {
		free(v);
		return -EIO;
	}
	*out = v;
	*n_out = n;
	return 0;
}

json_t *preview_run(struct store *s, const struct preview_request *rq)
{
	struct diag d;
	diag_init(&d, rq->file);
	struct policy_doc *doc = policy_parse_string(rq->document, strlen(rq->document), &d);
	if (!doc) {
		json_t *errors = json_array();
		for (size_t i = 0; i < d.n; i++)
			json_array_append_new(errors,
					      json_sprintf("%s: %s%s%s", d.file, d.v[i].path,
							   d.v[i].path[0] ? ": " : "", d.v[i].message));
		json_t *r = admin_reply_error(2, "%s: invalid policy (%zu error%s)", d.file, d.n,
					      d.n == 1 ? "" : "s");
		json_object_set_new(r, "errors", errors);
		diag_release(&d);
		return r;
	}
	diag_release(&d);

	json_t *reply = NULL, *got = NULL;
	struct preview_revision *revs = NULL;
	size_t n_revs = 0;
	struct flow_query q = {.mode = FLOW_QUERY_REPORT, .since_ms = rq->since_ms};
	int r = store_query_flows(s, &q, &got);
	if (r == -ETIMEDOUT) {
		reply = admin_reply_error(
		    1,
		    "reading the flows of the period: %s, its limit; a shorter --since, or raise the "
		    "controller's --flow-query-ms",
		    store_error(s));
		goto out;
	}
	if (r < 0 || revisions_in_force(s, rq->since_ms, rq->until_ms, &revs, &n_revs) < 0) {
		reply = admin_reply_error(1, "reading the flows of the period: %s", store_error(s));
		goto out;
	}
	reply = preview_judge(doc, rq->inv, json_object_get(got, "flows"));
	if (!reply) {
		reply = admin_reply_error(
		    1, "compiling the document against the current endpoints: out of memory");
		goto out;
	}
	json_object_set_new(reply, "since", json_integer(rq->since_ms));
	json_object_set_new(reply, "until", json_integer(rq->until_ms));
	json_object_set_new(reply, "observed_ms",
			    json_integer(preview_observed_ms(revs, n_revs, rq->since_ms, rq->until_ms)));
	json_object_set_new(reply, "observe", json_string(observe_name(doc->observe)));
	json_object_set(reply, "lost", json_object_get(got, "lost"));
	json_object_set(reply, "dropped", json_object_get(got, "dropped"));
	json_object_set_new(reply, "ok", json_true());
out:
	free(revs);
	json_decref(got);
	policy_doc_free(doc);
	return reply;
}
