/* The controller's page, JSON API and /metrics (see web.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/common.h"
#include "bulkhead/httpd.h"
#include "bulkhead/log.h"
#include "bulkhead/utf8.h"
#include "bulkhead/vocab.h"
#include "groupmap.h"
#include "web.h"

/* A parameter longer than this is refused (a name is at most 253). */
#define ARG_MAX_LEN	256
#define LIMIT_DEFAULT	200
#define LIMIT_MAX	5000
#define SINCE_DEFAULT_S 3600

struct web {
	struct loop *loop;
	struct httpd *httpd;
	struct store *store, *reader;
	struct compiler *compiler;
	struct sessions *sessions;
	struct metrics *metrics;
	struct worker *worker;
};

enum job_kind { JOB_FLOWS, JOB_GROUPS, JOB_HITS };

/* A flow query answered from the worker. */
struct job {
	struct worker_job job;
	struct web *w;
	struct httpd_request *r;
	enum job_kind kind;
	struct flow_query q;
	char *strings[6]; /* the query's: node, group, src_group, dst_group, verdict, (spare) */
	json_t *groups;	  /* JOB_GROUPS: the policy's, taken on the loop */
	json_t *reply;
	unsigned status;
};

/* ---- parameters ---- */

int web_port_parse(const char *s, struct flow_port *p)
{
	static const char *const protos[] = {"tcp", "udp", "sctp", "icmp", "icmpv6"};
	*p = (struct flow_port){.set = true, .lo = 0, .hi = 65535, .icmp_type = -1, .icmp_code = -1};
	const char *rest = s;
	size_t len = strcspn(s, "/");
	if (len && (s[0] < '0' || s[0] > '9')) {
		for (size_t i = 0; i < BH_ARRAY_SIZE(protos); i++)
			if (strlen(protos[i]) == len && strncmp(s, protos[i], len) == 0)
				p->proto = protos[i];
		if (!p->proto)
			return -EINVAL;
		if (!s[len])
			return 0;
		rest = s + len + 1;
	}
	bool icmp = p->proto && strncmp(p->proto, "icmp", 4) == 0;
	unsigned long v[2];
	int n = 0;
	for (const char *q = rest;;) {
		char *end;
		if (*q < '0' || *q > '9' || n == 2)
			return -EINVAL;
		errno = 0;
		v[n] = strtoul(q, &end, 10);
		if (errno || end - q > 5 || v[n] > (icmp ? 255 : 65535))
			return -EINVAL;
		n++;
		if (!*end)
			break;
		if (*end != (icmp ? '/' : '-'))
			return -EINVAL;
		q = end + 1;
	}
	if (icmp) {
		p->icmp_type = (int)v[0];
		if (n == 2)
			p->icmp_code = (int)v[1];
		return 0;
	}
	p->lo = (uint16_t)v[0];
	p->hi = (uint16_t)(n == 2 ? v[1] : v[0]);
	return p->lo <= p->hi ? 0 : -EINVAL;
}

/* A text parameter: NULL when absent or empty; else checked (UTF-8, no
 * control characters, bounded) and copied into *out. */
static int arg_text(struct httpd_request *r, const char *key, char **out, char *why, size_t n)
{
	const char *v = httpd_arg(r, key);
	*out = NULL;
	if (!v || !*v)
		return 0;
	size_t len = strlen(v);
	bool ok = len <= ARG_MAX_LEN && utf8_valid(v);
	for (size_t i = 0; ok && i < len; i++)
		ok = (unsigned char)v[i] >= 0x20 && v[i] != 0x7f;
	if (!ok) {
		snprintf(why, n, "%s: at most %d printable characters", key, ARG_MAX_LEN);
		return -EINVAL;
	}
	*out = xstrdup(v);
	return 0;
}

/* The filters every flow query takes, into j (its strings owned by j).
 * 0, or -EINVAL with why. */
static int parse_query(struct httpd_request *r, struct job *j, char *why, size_t n)
{
	static const char *const keys[] = {"node", "group", "src_group", "dst_group", "verdict"};
	for (size_t i = 0; i < BH_ARRAY_SIZE(keys); i++)
		if (arg_text(r, keys[i], &j->strings[i], why, n) < 0)
			return -EINVAL;
	j->q.node = j->strings[0];
	j->q.group = j->strings[1];
	j->q.src_group = j->strings[2];
	j->q.dst_group = j->strings[3];
	j->q.verdict = j->strings[4];
	if (j->q.verdict && vocab_find(report_verdict_words, j->q.verdict) < 0) {
		snprintf(why, n, "verdict: deny, audit or allow");
		return -EINVAL;
	}
	long since = SINCE_DEFAULT_S;
	const char *s = httpd_arg(r, "since");
	if (s && *s && (strlen(s) > 20 || duration_parse(s, &since) < 0)) {
		snprintf(why, n, "since: a duration like 10m, 24h or 7d (0: everything)");
		return -EINVAL;
	}
	int64_t now = clock_wall_ms();
	j->q.since_ms = since > 0 && since < now / 1000 ? now - (int64_t)since * 1000 : 0;
	const char *p = httpd_arg(r, "port");
	if (p && *p && (strlen(p) > 32 || web_port_parse(p, &j->q.port) < 0)) {
		snprintf(why, n, "port: 5432, tcp/5432, tcp/8000-8100, udp, icmp/8 or icmp/8/0");
		return -EINVAL;
	}
	j->q.limit = LIMIT_DEFAULT;
	const char *l = httpd_arg(r, "limit");
	if (l && *l) {
		char *end;
		errno = 0;
		long v = strtol(l, &end, 10);
		if (errno || *end || v < 1 || v > LIMIT_MAX) {
			snprintf(why, n, "limit: 1..%d", LIMIT_MAX);
			return -EINVAL;
		}
		j->q.limit = v;
	}
	return 0;
}

/* ---- the worker's part ---- */

static void job_free(struct job *j)
{
	for (size_t i = 0; i < BH_ARRAY_SIZE(j->strings); i++)
		free(j->strings[i]);
	json_decref(j->groups);
	json_decref(j->reply);
	free(j);
}

static void job_run(struct worker_job *wj)
{
	struct job *j = (struct job *)wj;
	json_t *out = NULL;
	int e = store_query_flows(j->w->reader, &j->q, &out);
	if (e == -ETIMEDOUT) {
		j->status = 503;
		j->reply = json_pack("{s:b,s:s}", "ok", 0, "error",
				     "the query ran past the controller's --flow-query-ms; narrow it");
		return;
	}
	if (e < 0) {
		j->status = 500;
		j->reply = json_pack("{s:b,s:s}", "ok", 0, "error", "reading flows failed");
		return;
	}
	if (j->kind == JOB_GROUPS) { /* pure: on this thread too */
		json_t *map = groupmap_build(json_object_get(out, "groups"), j->groups);
		json_object_del(out, "groups");
		json_object_update_new(out, map);
	}
	json_object_set_new(out, "ok", json_true());
	json_object_set_new(out, "time", json_integer(clock_wall_ms()));
	j->status = 200;
	j->reply = out;
}

static void job_cancel(struct worker_job *wj)
{
	store_interrupt(((struct job *)wj)->w->reader);
}

static void job_done(struct worker_job *wj, bool cancelled)
{
	struct job *j = (struct job *)wj;
	if (cancelled)
		httpd_respond_error(j->r, 503, "the controller is stopping");
	else
		httpd_respond_json(j->r, j->status, json_incref(j->reply));
	job_free(j);
}

/* ---- requests ---- */

static void flow_request(struct web *w, struct httpd_request *r, enum job_kind kind)
{
	struct job *j = xcalloc(1, sizeof(*j));
	j->job = (struct worker_job){.run = job_run, .done = job_done, .cancel = job_cancel};
	j->w = w;
	j->r = r;
	j->kind = kind;
	j->q.mode = kind == JOB_GROUPS ? FLOW_QUERY_GROUPS
		    : kind == JOB_HITS ? FLOW_QUERY_RULES
				       : FLOW_QUERY_REPORT;
	char why[160];
	if (parse_query(r, j, why, sizeof(why)) < 0) {
		httpd_respond_error(r, 400, why);
		job_free(j);
		return;
	}
	if (kind != JOB_FLOWS) /* the map and the hits are whole: no row limit */
		j->q.limit = 0;
	if (kind == JOB_HITS && (j->q.src_group || j->q.dst_group || j->q.port.set)) {
		httpd_respond_error(
		    r, 400, "hits: rule hits have neither ends nor ports (since, node, group, verdict)");
		job_free(j);
		return;
	}
	if (kind == JOB_GROUPS)
		j->groups = groupmap_groups(compiler_policy(w->compiler));
	worker_submit(w->worker, &j->job);
}

static void nodes_request(struct web *w, struct httpd_request *r)
{
	int64_t rev = compiler_revision(w->compiler);
	httpd_respond_json(
	    r, 200,
	    json_pack("{s:b,s:o,s:I,s:o}", "ok", 1, "revision", rev ? json_integer(rev) : json_null(), "time",
		      (json_int_t)clock_wall_ms(), "nodes", sessions_status_nodes(w->sessions)));
}

static void on_request(void *data, struct httpd_request *r)
{
	struct web *w = data;
	const char *path = httpd_path(r);
	if (strcmp(path, "/api/flows") == 0)
		return flow_request(w, r, JOB_FLOWS);
	if (strcmp(path, "/api/groups") == 0)
		return flow_request(w, r, JOB_GROUPS);
	if (strcmp(path, "/api/hits") == 0)
		return flow_request(w, r, JOB_HITS);
	if (strcmp(path, "/api/nodes") == 0)
		return nodes_request(w, r);
	if (strcmp(path, "/metrics") == 0) {
		size_t len;
		char *text = metrics_render(w->metrics, &len);
		return httpd_respond(r, 200, METRICS_CONTENT_TYPE, text, len);
	}
	const char *want = strcmp(path, "/") == 0 ? "/index.html" : path;
	for (size_t i = 0; i < web_n_assets; i++)
		if (strcmp(web_assets[i].path, want) == 0)
			return httpd_respond_static(r, 200, web_assets[i].type, web_assets[i].data,
						    web_assets[i].len);
	httpd_respond_error(r, 404, "no such page");
}

/* ---- life cycle ---- */

struct web *web_new(struct loop *l, const struct web_options *o, struct store *s, struct compiler *c,
		    struct sessions *ss, struct metrics *m, char **err)
{
	struct web *w = xcalloc(1, sizeof(*w));
	*w = (struct web){
	    .loop = l, .store = s, .compiler = c, .sessions = ss, .metrics = m, .worker = o->worker};
	w->reader = store_open_reader(s, err);
	if (!w->reader) {
		free(w);
		return NULL;
	}
	store_set_query_limit(w->reader, o->flow_query_ms);
	struct httpd_options ho = {
	    .listen = o->listen, .token = o->token, .what = "--http", .page_token = true};
	int e;
	w->httpd = httpd_new(l, &ho, on_request, w, &e, err);
	if (!w->httpd) {
		store_free(w->reader);
		free(w);
		return NULL;
	}
	return w;
}

void web_free(struct web *w)
{
	if (!w)
		return;
	httpd_free(w->httpd);
	store_free(w->reader);
	free(w);
}

uint16_t web_port(const struct web *w)
{
	return httpd_port(w->httpd);
}
