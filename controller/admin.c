/* The admin endpoint (see admin.h and bulkhead/admin.h). */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bulkhead/admin.h"
#include "bulkhead/compile.h"
#include "bulkhead/escape.h"
#include "bulkhead/inventory.h"
#include "bulkhead/log.h"
#include "bulkhead/pathtrust.h"
#include "bulkhead/sha256.h"
#include "bulkhead/utf8.h"
#include "bulkhead/zmsg.h"
#include "admin.h"
#include "preview.h"

/* Requests read per call; the loop calls again while more wait. */
#define READ_BURST 16

struct admin {
	struct loop *loop;
	void *sock;
	struct loop_source *src;
	struct store *store;
	struct store *reader; /* the worker's read-only connection; NULL: no worker */
	struct compiler *compiler;
	struct sessions *sessions;
	struct worker *worker;
	uint64_t malformed;
};

/* A request answered later, from the worker: what it does there, and
 * where its reply goes. */
enum job_kind {
	JOB_NONE,    /* answered at once */
	JOB_FLOWS,   /* a flow query on the reader */
	JOB_SHOW,    /* a revision's document, from the reader */
	JOB_POLICY,  /* a document parsed and validated, then made a revision on the loop */
	JOB_PREVIEW, /* a document judged against the flows of a period (preview.h), on the reader */
};

struct parsed_policy {
	char *document, *file, *comment; /* file and comment as JSON can carry them */
	struct policy_doc *doc;		 /* NULL: invalid, the errors in d */
	struct diag d;
	char sha256[65];
};

struct job {
	struct worker_job job;
	struct admin *a;
	enum job_kind kind;
	uint8_t rid[256];
	size_t rid_len;
	struct flow_query q; /* JOB_FLOWS: its strings in strings */
	json_t *strings;
	int64_t revision;		/* JOB_SHOW */
	struct parsed_policy policy;	/* JOB_POLICY */
	struct preview_request preview; /* JOB_PREVIEW: its strings in strings */
	struct compiler_hold *hold;	/* JOB_PREVIEW: preview.inv held */
	json_t *reply;
};

/* s as JSON can carry it: a path given to --policy, or a comment an older
 * controller stored, need not be UTF-8 (jansson would refuse the string).
 * NULL stays NULL; malloc()ed. */
static char *as_text(const char *s)
{
	if (!s)
		return NULL;
	char *t = utf8_valid(s) ? strdup(s) : utf8_escape(s);
	if (!t)
		abort();
	return t;
}

json_t *admin_reply_error(int code, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	char *text = as_text(buf); /* it may quote a peer, or be cut inside a character */
	json_t *r = json_pack("{s:b,s:i,s:s}", "ok", 0, "code", code, "error", text);
	free(text);
	return r;
}

static json_t *ok(json_t *payload)
{
	json_object_set_new(payload, "ok", json_true());
	return payload;
}

/* ---- policy ---- */

/* Takes what a policy.apply names (copies; file and comment as JSON can
 * carry them). */
static void policy_init(struct parsed_policy *p, const char *document, const char *file, const char *comment)
{
	p->document = xstrdup(document);
	p->file = as_text(file && file[0] ? file : "policy");
	p->comment = as_text(comment);
	p->doc = NULL;
	diag_init(&p->d, p->file);
}

static void policy_release(struct parsed_policy *p)
{
	policy_doc_free(p->doc);
	diag_release(&p->d);
	free(p->document);
	free(p->file);
	free(p->comment);
}

/* The slow part, pure: any thread. */
static void policy_parse(struct parsed_policy *p)
{
	p->doc = policy_parse_string(p->document, strlen(p->document), &p->d);
	sha256_hex(p->document, strlen(p->document), p->sha256);
}

/* The parsed document made the newest revision (or said why not): the
 * reply. On the loop's thread; takes p->doc. */
static json_t *policy_commit(struct store *s, struct compiler *c, struct parsed_policy *p)
{
	if (!p->doc) {
		json_t *errors = json_array();
		for (size_t i = 0; i < p->d.n; i++)
			json_array_append_new(errors,
					      json_sprintf("%s: %s%s%s", p->d.file, p->d.v[i].path,
							   p->d.v[i].path[0] ? ": " : "", p->d.v[i].message));
		json_t *r = admin_reply_error(
		    2, "%s: invalid policy (%zu error%s); revision %lld stays in force", p->d.file, p->d.n,
		    p->d.n == 1 ? "" : "s", (long long)compiler_revision(c));
		json_object_set_new(r, "errors", errors);
		return r;
	}
	char current[65];
	if (compiler_revision(c) && store_revision_sha256(s, compiler_revision(c), current) == 0 &&
	    strcmp(p->sha256, current) == 0)
		return ok(
		    json_pack("{s:I,s:b}", "revision", (json_int_t)compiler_revision(c), "unchanged", 1));
	int64_t rev;
	if (store_add_revision(s, p->document, p->comment, &rev) < 0) {
		log_error("storing a policy revision: %s", store_error(s));
		return admin_reply_error(1, "storing the revision failed: %s", store_error(s));
	}
	compiler_set_policy(c, rev, p->doc);
	p->doc = NULL;
	log_info("policy revision %lld applied%s%s", (long long)rev, p->comment ? ": " : "",
		 p->comment ? p->comment : "");
	return ok(json_pack("{s:I,s:b}", "revision", (json_int_t)rev, "unchanged", 0));
}

json_t *admin_apply_policy(struct store *s, struct compiler *c, const char *document, const char *file,
			   const char *comment)
{
	struct parsed_policy p;
	policy_init(&p, document, file, comment);
	policy_parse(&p);
	json_t *r = policy_commit(s, c, &p);
	policy_release(&p);
	return r;
}

static void add_revision(void *data, const struct store_revision *r)
{
	json_t *arr = data;
	char *comment = as_text(r->comment);
	json_array_append_new(arr,
			      json_pack("{s:I,s:I,s:s?,s:s}", "revision", (json_int_t)r->revision, "time",
					(json_int_t)r->time, "comment", comment, "sha256", r->sha256));
	free(comment);
}

static json_t *cmd_history(struct admin *a, json_t *req, struct job *later)
{
	json_t *revs = json_array();
	if (store_each_revision(a->store, add_revision, revs) < 0) {
		json_decref(revs);
		return admin_reply_error(1, "reading the history: %s", store_error(a->store));
	}
	size_t i;
	json_t *r;
	json_array_foreach (revs, i, r)
		json_object_set_new(r, "current",
				    json_boolean(json_integer_value(json_object_get(r, "revision")) ==
						 compiler_revision(a->compiler)));
	return ok(json_pack("{s:o}", "revisions", revs));
}

/* The "revision" member: 0 when absent (meaning newest), -1 when bad. */
static int64_t req_revision(json_t *req)
{
	json_t *v = json_object_get(req, "revision");
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 1)
		return -1;
	return json_integer_value(v);
}

/* Revision rev as policy.show answers; any thread (s is its connection). */
static json_t *show_revision(struct store *s, int64_t rev)
{
	struct store_revision r = {0};
	int e = rev ? store_get_revision(s, rev, &r) : -ENOENT;
	if (e == -ENOENT)
		return rev ? admin_reply_error(2, "no revision %lld", (long long)rev)
			   : admin_reply_error(1, "no policy has been applied yet");
	if (e < 0)
		return admin_reply_error(1, "reading revision %lld: %s", (long long)rev, store_error(s));
	char *comment = as_text(r.comment);
	json_t *out = json_pack("{s:I,s:I,s:s?,s:s}", "revision", (json_int_t)r.revision, "time",
				(json_int_t)r.time, "comment", comment, "document", r.document);
	free(comment);
	store_revision_release(&r);
	if (!out) /* a stored document is one that validated: UTF-8 */
		return admin_reply_error(1, "revision %lld cannot be sent as JSON", (long long)rev);
	return ok(out);
}

static json_t *cmd_show(struct admin *a, json_t *req, struct job *later)
{
	int64_t rev = req_revision(req);
	if (rev < 0)
		return admin_reply_error(2, "\"revision\" must be an integer >= 1");
	if (rev == 0)
		rev = compiler_revision(a->compiler);
	if (!later || !rev)
		return show_revision(a->store, rev);
	later->kind = JOB_SHOW; /* a document may be large: read off the loop */
	later->revision = rev;
	return NULL;
}

/* policy.apply and rollback: parsed off the loop when there is a worker. */
static json_t *apply(struct admin *a, struct job *later, const char *document, const char *file,
		     const char *comment)
{
	if (!later)
		return admin_apply_policy(a->store, a->compiler, document, file, comment);
	later->kind = JOB_POLICY;
	policy_init(&later->policy, document, file, comment);
	return NULL;
}

static json_t *cmd_apply(struct admin *a, json_t *req, struct job *later)
{
	json_t *docv = json_object_get(req, "document"), *file = json_object_get(req, "file"),
	       *comment = json_object_get(req, "comment");
	if (!json_is_string(docv) || (file && !json_is_string(file)) ||
	    (comment && !json_is_null(comment) && !json_is_string(comment)))
		return admin_reply_error(
		    2, "policy.apply needs \"document\" (and optional \"file\", \"comment\") as strings");
	return apply(a, later, json_string_value(docv), json_string_value(file), json_string_value(comment));
}

static json_t *cmd_rollback(struct admin *a, json_t *req, struct job *later)
{
	int64_t rev = req_revision(req);
	if (rev <= 0)
		return admin_reply_error(2, "policy.rollback needs \"revision\", an integer >= 1");
	struct store_revision r = {0};
	int e = store_get_revision(a->store, rev, &r);
	if (e == -ENOENT)
		return admin_reply_error(2, "no revision %lld", (long long)rev);
	if (e < 0)
		return admin_reply_error(1, "reading revision %lld: %s", (long long)rev,
					 store_error(a->store));
	char comment[64], file[64];
	snprintf(comment, sizeof(comment), "rollback to %lld", (long long)rev);
	snprintf(file, sizeof(file), "revision %lld", (long long)rev);
	json_t *out = apply(a, later, r.document, file, comment);
	store_revision_release(&r);
	return out;
}

/* ---- status and endpoints ---- */

static json_t *cmd_status(struct admin *a, json_t *req, struct job *later)
{
	int64_t rev = compiler_revision(a->compiler);
	json_t *counters = sessions_counters(a->sessions);
	json_object_set_new(counters, "admin_requests_malformed", json_integer((json_int_t)a->malformed));
	return ok(json_pack("{s:o,s:I,s:o,s:o,s:o}", "revision", rev ? json_integer(rev) : json_null(),
			    "time", (json_int_t)clock_wall_ms(), "nodes", sessions_status_nodes(a->sessions),
			    "counters", counters, "conflicts", compiler_conflicts(a->compiler)));
}

static json_t *cmd_endpoints(struct admin *a, json_t *req, struct job *later)
{
	json_t *nodev = json_object_get(req, "node");
	if (nodev && !json_is_null(nodev) && !json_is_string(nodev))
		return admin_reply_error(2, "\"node\" must be a string");
	const char *node = json_string_value(nodev);
	const struct inventory *inv = compiler_inventory(a->compiler);
	const struct policy_doc *doc = compiler_policy(a->compiler);
	json_t *out = json_array();
	for (size_t i = 0; inv && i < inv->n; i++) {
		const struct endpoint *ep = &inv->v[i];
		if (node && strcmp(node, ep->node) != 0)
			continue;
		json_t *labels = json_object(), *addrs = json_array(), *groups = json_array();
		for (size_t k = 0; k < ep->labels.n; k++)
			json_object_set_new(labels, ep->labels.v[k].key, json_string(ep->labels.v[k].value));
		for (size_t k = 0; k < ep->n_addrs; k++) {
			char s[ADDR_STRLEN];
			addr_format(&ep->addrs[k], s);
			json_array_append_new(addrs, json_string(s));
		}
		for (size_t g = 0; doc && g < doc->n_groups; g++)
			if (compile_group_selects(doc->groups[g], ep))
				json_array_append_new(groups, json_string(doc->groups[g]->name));
		json_array_append_new(out, json_pack("{s:s,s:s,s:s?,s:o,s:o,s:o}", "node", ep->node, "name",
						     ep->name, "netns", ep->netns, "labels", labels,
						     "addresses", addrs, "groups", groups));
	}
	return ok(json_pack("{s:o}", "endpoints", out));
}

/* ---- nodes ---- */

static json_t *cmd_nodes_forget(struct admin *a, json_t *req, struct job *later)
{
	const char *node = json_string_value(json_object_get(req, "node"));
	json_t *force = json_object_get(req, "force");
	if (!node || (force && !json_is_boolean(force)))
		return admin_reply_error(
		    2, "nodes.forget needs \"node\", a string (and optional \"force\", a boolean)");
	if (!inventory_node_name_valid(node))
		return admin_reply_error(2, "\"%s\" is not a node name: %s", ESCAPED(node),
					 INVENTORY_NODE_NAME_RULE);
	bool was_connected = false;
	int r = sessions_forget(a->sessions, node, json_is_true(force), &was_connected);
	if (r == -ENOENT && sessions_known(a->sessions, node))
		return admin_reply_error(
		    2, "node %s has nothing to forget: it is known while its key is in the agent allow-list",
		    node);
	if (r == -ENOENT)
		return admin_reply_error(2, "no node %s is known", node);
	if (r == -EBUSY)
		return admin_reply_error(
		    1,
		    "node %s is connected: stop its agent first, or --force (it comes back if its agent "
		    "keeps running)",
		    node);
	if (r < 0)
		return admin_reply_error(1, "forgetting node %s: %s", node, store_error(a->store));
	/* The allow-list still names it: known (and down) until its key goes. */
	return ok(json_pack("{s:s,s:b,s:b}", "node", node, "was_connected", was_connected, "known",
			    sessions_known(a->sessions, node)));
}

/* ---- flows ---- */

static bool opt_string(json_t *req, const char *key, const char **out)
{
	json_t *v = json_object_get(req, key);
	*out = json_string_value(v);
	return !v || json_is_null(v) || json_is_string(v);
}

static bool opt_count(json_t *req, const char *key, int64_t *out)
{
	json_t *v = json_object_get(req, key);
	if (!v || json_is_null(v))
		return true;
	*out = json_integer_value(v);
	return json_is_integer(v) && *out >= 0;
}

/* A flow query and its reply; any thread (s is its connection). */
static json_t *query_flows(struct store *s, const struct flow_query *q)
{
	json_t *out = NULL;
	int r = store_query_flows(s, q, &out);
	if (r == -ETIMEDOUT)
		return admin_reply_error(
		    1,
		    "reading flows: %s, its limit; narrow it (--since, --node, --group, --verdict) or "
		    "raise the controller's --flow-query-ms",
		    store_error(s));
	if (r < 0)
		return admin_reply_error(1, "reading flows: %s", store_error(s));
	json_object_set_new(out, "time", json_integer(clock_wall_ms()));
	return ok(out);
}

static json_t *cmd_flows(struct admin *a, json_t *req, struct job *later)
{
	struct flow_query q = {.mode = FLOW_QUERY_REPORT};
	const char *mode = NULL;
	int64_t since_s = -1;
	if (!opt_string(req, "mode", &mode) || !opt_string(req, "node", &q.node) ||
	    !opt_string(req, "group", &q.group) || !opt_string(req, "verdict", &q.verdict))
		return admin_reply_error(2, "\"mode\", \"node\", \"group\" and \"verdict\" must be strings");
	if (!opt_count(req, "since_seconds", &since_s) || !opt_count(req, "limit", &q.limit) ||
	    !opt_count(req, "after_id", &q.after_id))
		return admin_reply_error(
		    2, "\"since_seconds\", \"limit\" and \"after_id\" must be integers >= 0");
	if (mode && strcmp(mode, "follow") == 0)
		q.mode = FLOW_QUERY_FOLLOW;
	else if (mode && strcmp(mode, "rules") == 0)
		q.mode = FLOW_QUERY_RULES;
	else if (mode && strcmp(mode, "report") != 0)
		return admin_reply_error(2, "mode \"%s\": expected report, follow or rules", mode);
	if (q.verdict && vocab_find(report_verdict_words, q.verdict) < 0)
		return admin_reply_error(2, "verdict \"%s\": expected deny, audit or allow", q.verdict);
	/* Allowed flows (observe all) are listed only when asked for: the
	 * report is of blocked flows; per rule, every verdict counts. */
	q.blocked_only = q.mode != FLOW_QUERY_RULES;
	int64_t now = clock_wall_ms();
	q.since_ms = since_s >= 0 && since_s < now / 1000 ? now - since_s * 1000 : 0;
	if (!later)
		return query_flows(a->store, &q);
	/* Off the loop: the strings stay in the request, which the job keeps. */
	later->kind = JOB_FLOWS;
	later->q = q;
	later->strings = json_incref(req);
	return NULL;
}

/* ---- policy preview ---- */

/* The flows of a period judged under a document (preview.h): always off
 * the loop when there is a worker, as a flow query is. */
static json_t *cmd_preview(struct admin *a, json_t *req, struct job *later)
{
	json_t *docv = json_object_get(req, "document"), *file = json_object_get(req, "file");
	int64_t since_s = 24 * 3600;
	if (!json_is_string(docv) || (file && !json_is_string(file)) ||
	    !opt_count(req, "since_seconds", &since_s))
		return admin_reply_error(
		    2, "policy.preview needs \"document\" (and optional \"file\") as strings, optional "
		       "\"since_seconds\" an integer >= 0");
	int64_t now = clock_wall_ms();
	struct preview_request rq = {
	    .document = json_string_value(docv),
	    .file = file && json_string_length(file) ? json_string_value(file) : "policy",
	    .since_ms = since_s < now / 1000 ? now - since_s * 1000 : 0,
	    .until_ms = now,
	};
	if (!later) {
		rq.inv = compiler_inventory(a->compiler);
		return preview_run(a->store, &rq);
	}
	later->kind = JOB_PREVIEW;
	later->preview = rq;
	later->hold = compiler_inventory_hold(a->compiler, &later->preview.inv);
	later->strings = json_incref(req);
	return NULL;
}

/* ---- requests ---- */

static const struct command {
	const char *name;
	json_t *(*fn)(struct admin *a, json_t *req, struct job *later);
} commands[] = {
    {"policy.apply", cmd_apply},
    {"policy.history", cmd_history},
    {"policy.show", cmd_show},
    {"policy.rollback", cmd_rollback},
    {"status", cmd_status},
    {"endpoints", cmd_endpoints},
    {"flows", cmd_flows},
    {"nodes.forget", cmd_nodes_forget},
    {"policy.preview", cmd_preview},
};

/* The reply to one request; or NULL, and later (a job not yet submitted;
 * NULL when there is no worker) says what the worker is to do for it
 * (JOB_NONE: nothing, the reply could not be made). */
static json_t *handle(struct admin *a, const void *data, size_t len, struct job *later)
{
	json_error_t jerr;
	json_t *req = json_loadb(data, len, 0, &jerr);
	json_t *reply = NULL;
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	json_t *v = json_object_get(req, "v");
	if (!json_is_object(req) || !cmd) {
		a->malformed++;
		reply = admin_reply_error(2, "malformed request: %s", req ? "no \"cmd\"" : jerr.text);
	} else if (!json_is_integer(v) || json_integer_value(v) != ADMIN_VERSION) {
		reply = admin_reply_error(2, "admin protocol version mismatch: the controller speaks %d",
					  ADMIN_VERSION);
	} else {
		size_t i = 0;
		while (i < BH_ARRAY_SIZE(commands) && strcmp(cmd, commands[i].name) != 0)
			i++;
		if (i == BH_ARRAY_SIZE(commands))
			reply = admin_reply_error(2, "unknown command \"%s\"", ESCAPED(cmd));
		else
			reply =
			    commands[i].fn(a, req, later); /* NULL: later, or json_pack refused a string */
	}
	json_decref(req);
	return reply;
}

static void send_reply(struct admin *a, const void *rid, size_t rid_len, json_t *reply)
{
	if (!reply) /* a handler's json_pack refused a string: an answer all the same */
		reply = admin_reply_error(1, "the controller could not encode its reply");
	char *text = json_dumps(reply, JSON_COMPACT);
	json_decref(reply);
	if (!text)
		abort();
	/* A client gone meanwhile: its reply is dropped (no
	 * ROUTER_MANDATORY). */
	if (zmq_send(a->sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
	    zmq_send(a->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
	    zmq_send(a->sock, text, strlen(text), ZMQ_DONTWAIT) < 0)
		log_warn("admin: sending a reply: %s", zmq_strerror(errno));
	free(text);
}

/* ---- the worker's part ---- */

static void job_free(struct job *j)
{
	json_decref(j->strings);
	json_decref(j->reply);
	if (j->kind == JOB_POLICY)
		policy_release(&j->policy);
	compiler_inventory_release(j->hold);
	free(j);
}

static void job_run(struct worker_job *wj)
{
	struct job *j = (struct job *)wj;
	switch (j->kind) {
	case JOB_FLOWS:
		j->reply = query_flows(j->a->reader, &j->q);
		break;
	case JOB_SHOW:
		j->reply = show_revision(j->a->reader, j->revision);
		break;
	case JOB_POLICY:
		policy_parse(&j->policy);
		break;
	case JOB_PREVIEW:
		j->reply = preview_run(j->a->reader, &j->preview);
		break;
	case JOB_NONE:
		break;
	}
}

static void job_cancel(struct worker_job *wj)
{
	struct job *j = (struct job *)wj;
	if (j->kind != JOB_POLICY)
		store_interrupt(j->a->reader);
}

static void job_done(struct worker_job *wj, bool cancelled)
{
	struct job *j = (struct job *)wj;
	if (!cancelled) {
		json_t *reply = j->kind == JOB_POLICY ? policy_commit(j->a->store, j->a->compiler, &j->policy)
						      : json_incref(j->reply);
		send_reply(j->a, j->rid, j->rid_len, reply);
	}
	job_free(j);
}

/* ---- the socket ---- */

static void on_request(void *data, uint32_t events)
{
	struct admin *a = data;
	struct zmsg m;
	for (int i = 0; i < READ_BURST && zmsg_recv(&m, a->sock, 3) > 0; i++) {
		/* ROUTER: a REQ's request is its routing id, an empty frame and
		 * one frame of JSON. */
		if (m.parts < 2 || zmsg_size(&m, 0) > sizeof(((struct job *)0)->rid) ||
		    zmsg_size(&m, 1) != 0) {
			a->malformed++;
		} else if (m.parts != 3) {
			a->malformed++;
			send_reply(a, zmsg_data(&m, 0), zmsg_size(&m, 0),
				   admin_reply_error(2, "malformed request: %s",
						     m.parts < 3 ? "no frame" : "more than one frame"));
		} else {
			struct job *later = NULL;
			if (a->worker) {
				later = xcalloc(1, sizeof(*later));
				later->job = (struct worker_job){
				    .run = job_run, .done = job_done, .cancel = job_cancel};
				later->a = a;
				memcpy(later->rid, zmsg_data(&m, 0), zmsg_size(&m, 0));
				later->rid_len = zmsg_size(&m, 0);
			}
			json_t *reply = handle(a, zmsg_data(&m, 2), zmsg_size(&m, 2), later);
			if (later && !reply && later->kind != JOB_NONE) {
				worker_submit(a->worker, &later->job);
			} else {
				send_reply(a, zmsg_data(&m, 0), zmsg_size(&m, 0), reply);
				free(later);
			}
		}
		zmsg_release(&m);
	}
}

void admin_dispatch(struct admin *a)
{
	on_request(a, 0);
}

/* ---- life cycle ---- */

struct admin *admin_new(struct loop *l, void *zctx, const struct admin_options *o, struct store *s,
			struct compiler *c, struct sessions *ss, char **err)
{
	struct admin *a = xcalloc(1, sizeof(*a));
	a->loop = l;
	a->store = s;
	a->compiler = c;
	a->sessions = ss;
	a->worker = o->worker;
	*err = NULL;
	const char *endpoint = o->endpoint;
	if (a->worker) {
		a->reader = store_open_reader(s, err);
		if (!a->reader) {
			admin_free(a);
			return NULL;
		}
		store_set_query_limit(a->reader, o->flow_query_ms);
	} else {
		store_set_query_limit(s, o->flow_query_ms);
	}
	const char *path = strncmp(endpoint, "ipc://", 6) == 0 && endpoint[6] != '@' ? endpoint + 6 : NULL;
	if (path) {
		/* Root-only: a directory we make is 0700. One that was there
		 * (/run, /tmp) must be ours or root's, all the way up, and
		 * writable by nobody else (unless sticky): whoever may rename
		 * in it could swap the socket for theirs and be sent every
		 * policy. The socket itself is 0600 from birth. */
		char *dir = xstrdup(path), *why = NULL;
		const char *d = dirname(dir);
		int r = mkdir(d, 0700) < 0 && errno != EEXIST ? -errno : 0;
		/* A directory others control is the reason to give, also when
		 * it is what kept mkdir out (root without CAP_DAC_OVERRIDE). */
		int t = pathtrust_dir(d, &why);
		if (r < 0 && t != -EPERM &&
		    asprintf(err, "admin endpoint %s: creating %s: %s", endpoint, d, strerror(-r)) < 0)
			abort();
		if ((r == 0 || t == -EPERM) && (r = t) < 0 &&
		    asprintf(err,
			     "admin endpoint %s: refused: %s (another user could put their own socket in its "
			     "place)",
			     endpoint, why ? why : strerror(-r)) < 0)
			abort();
		free(why);
		free(dir);
		if (r < 0) {
			admin_free(a);
			return NULL;
		}
	} else {
		log_warn("admin endpoint %s is not an ipc:// path: it has no authentication, and whoever "
			 "reaches it can change the policy",
			 endpoint);
	}
	a->sock = zmq_socket(zctx, ZMQ_ROUTER);
	int zero = 0;
	int64_t max = ADMIN_MAX_MSG;
	mode_t old_mask = umask(0177); /* ipc binds in this thread: the socket file is made 0600 */
	bool ok = a->sock && zmq_setsockopt(a->sock, ZMQ_LINGER, &zero, sizeof(zero)) == 0 &&
		  zmq_setsockopt(a->sock, ZMQ_MAXMSGSIZE, &max, sizeof(max)) == 0 &&
		  zmq_bind(a->sock, endpoint) == 0;
	int e = errno;
	umask(old_mask);
	if (!ok) {
		if (asprintf(err, "admin endpoint %s: %s", endpoint, zmq_strerror(e)) < 0)
			abort();
		admin_free(a);
		return NULL;
	}
	if (path && chmod(path, 0600) < 0) /* in case a libzmq binds elsewhere */
		log_warn("admin: chmod 0600 %s: %m", path);
	if (l && !(a->src = loop_add_zmq(l, a->sock, on_request, a))) {
		if (asprintf(err, "admin endpoint %s: the loop: %s", endpoint, strerror(errno)) < 0)
			abort();
		admin_free(a);
		return NULL;
	}
	return a;
}

void admin_free(struct admin *a)
{
	if (!a)
		return;
	if (a->loop)
		loop_remove(a->loop, a->src);
	if (a->sock)
		zmq_close(a->sock);
	store_free(a->reader);
	free(a);
}
