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
#include "admin.h"

struct admin {
	void *rep;
	struct store *store;
	struct compiler *compiler;
	struct agents *agents;
	uint64_t malformed;
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

static json_t *fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static json_t *fail(int code, const char *fmt, ...)
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

static json_t *apply_policy(struct store *s, struct compiler *c, const char *document, const char *file,
			    const char *comment);

json_t *admin_apply_policy(struct store *s, struct compiler *c, const char *document, const char *file,
			   const char *comment)
{
	char *file_text = as_text(file), *comment_text = as_text(comment);
	json_t *r = apply_policy(s, c, document, file_text, comment_text);
	free(file_text);
	free(comment_text);
	return r;
}

static json_t *apply_policy(struct store *s, struct compiler *c, const char *document, const char *file,
			    const char *comment)
{
	struct diag d;
	diag_init(&d, file && file[0] ? file : "policy");
	struct policy_doc *doc = policy_parse_string(document, strlen(document), &d);
	if (!doc) {
		json_t *errors = json_array();
		for (size_t i = 0; i < d.n; i++)
			json_array_append_new(errors, json_sprintf("%s: %s%s%s", d.file, d.v[i].path,
								   d.v[i].path[0] ? ": " : "", d.v[i].message));
		json_t *r = fail(2, "%s: invalid policy (%zu error%s); revision %lld stays in force", d.file, d.n,
				 d.n == 1 ? "" : "s", (long long)compiler_revision(c));
		json_object_set_new(r, "errors", errors);
		diag_release(&d);
		return r;
	}
	diag_release(&d);

	struct store_revision cur = {0};
	if (compiler_revision(c) && store_get_revision(s, compiler_revision(c), &cur) == 0) {
		char hex[65];
		sha256_hex(document, strlen(document), hex);
		if (strcmp(hex, cur.sha256) == 0) {
			store_revision_release(&cur);
			policy_doc_free(doc);
			return ok(json_pack("{s:I,s:b}", "revision", (json_int_t)compiler_revision(c), "unchanged", 1));
		}
		store_revision_release(&cur);
	}
	int64_t rev;
	if (store_add_revision(s, document, comment, &rev) < 0) {
		policy_doc_free(doc);
		log_error("storing a policy revision: %s", store_error(s));
		return fail(1, "storing the revision failed: %s", store_error(s));
	}
	compiler_set_policy(c, rev, doc);
	log_info("policy revision %lld applied%s%s", (long long)rev, comment ? ": " : "", comment ? comment : "");
	return ok(json_pack("{s:I,s:b}", "revision", (json_int_t)rev, "unchanged", 0));
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

static json_t *cmd_history(struct admin *a, json_t *req)
{
	json_t *revs = json_array();
	if (store_each_revision(a->store, add_revision, revs) < 0) {
		json_decref(revs);
		return fail(1, "reading the history: %s", store_error(a->store));
	}
	size_t i;
	json_t *r;
	json_array_foreach(revs, i, r) json_object_set_new(
		r, "current",
		json_boolean(json_integer_value(json_object_get(r, "revision")) == compiler_revision(a->compiler)));
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

static json_t *cmd_show(struct admin *a, json_t *req)
{
	int64_t rev = req_revision(req);
	if (rev < 0)
		return fail(2, "\"revision\" must be an integer >= 1");
	if (rev == 0)
		rev = compiler_revision(a->compiler);
	struct store_revision r = {0};
	int e = rev ? store_get_revision(a->store, rev, &r) : -ENOENT;
	if (e == -ENOENT)
		return rev ? fail(2, "no revision %lld", (long long)rev) : fail(1, "no policy has been applied yet");
	if (e < 0)
		return fail(1, "reading revision %lld: %s", (long long)rev, store_error(a->store));
	char *comment = as_text(r.comment);
	json_t *out = json_pack("{s:I,s:I,s:s?,s:s}", "revision", (json_int_t)r.revision, "time",
				(json_int_t)r.time, "comment", comment, "document", r.document);
	free(comment);
	store_revision_release(&r);
	if (!out) /* a stored document is one that validated: UTF-8 */
		return fail(1, "revision %lld cannot be sent as JSON", (long long)rev);
	return ok(out);
}

static json_t *cmd_apply(struct admin *a, json_t *req)
{
	json_t *docv = json_object_get(req, "document"), *file = json_object_get(req, "file"),
	       *comment = json_object_get(req, "comment");
	if (!json_is_string(docv) || (file && !json_is_string(file)) || (comment && !json_is_null(comment) && !json_is_string(comment)))
		return fail(2, "policy.apply needs \"document\" (and optional \"file\", \"comment\") as strings");
	return admin_apply_policy(a->store, a->compiler, json_string_value(docv), json_string_value(file),
				  json_string_value(comment));
}

static json_t *cmd_rollback(struct admin *a, json_t *req)
{
	int64_t rev = req_revision(req);
	if (rev <= 0)
		return fail(2, "policy.rollback needs \"revision\", an integer >= 1");
	struct store_revision r = {0};
	int e = store_get_revision(a->store, rev, &r);
	if (e == -ENOENT)
		return fail(2, "no revision %lld", (long long)rev);
	if (e < 0)
		return fail(1, "reading revision %lld: %s", (long long)rev, store_error(a->store));
	char comment[64], file[64];
	snprintf(comment, sizeof(comment), "rollback to %lld", (long long)rev);
	snprintf(file, sizeof(file), "revision %lld", (long long)rev);
	json_t *out = admin_apply_policy(a->store, a->compiler, r.document, file, comment);
	store_revision_release(&r);
	return out;
}

/* ---- status and endpoints ---- */

static json_t *cmd_status(struct admin *a, json_t *req)
{
	int64_t rev = compiler_revision(a->compiler);
	json_t *counters = agents_counters(a->agents);
	json_object_set_new(counters, "admin_requests_malformed", json_integer((json_int_t)a->malformed));
	compiler_refresh(a->compiler);
	return ok(json_pack("{s:o,s:I,s:o,s:o,s:o}", "revision", rev ? json_integer(rev) : json_null(), "time",
			    (json_int_t)clock_wall_ms(), "nodes", agents_status_nodes(a->agents), "counters", counters,
			    "conflicts", compiler_conflicts(a->compiler)));
}

static json_t *cmd_endpoints(struct admin *a, json_t *req)
{
	json_t *nodev = json_object_get(req, "node");
	if (nodev && !json_is_null(nodev) && !json_is_string(nodev))
		return fail(2, "\"node\" must be a string");
	const char *node = json_string_value(nodev);
	compiler_refresh(a->compiler);
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
		json_array_append_new(out, json_pack("{s:s,s:s,s:s?,s:o,s:o,s:o}", "node", ep->node, "name", ep->name,
						     "netns", ep->netns, "labels", labels, "addresses", addrs, "groups",
						     groups));
	}
	return ok(json_pack("{s:o}", "endpoints", out));
}

/* ---- nodes ---- */

static json_t *cmd_nodes_forget(struct admin *a, json_t *req)
{
	const char *node = json_string_value(json_object_get(req, "node"));
	json_t *force = json_object_get(req, "force");
	if (!node || (force && !json_is_boolean(force)))
		return fail(2, "nodes.forget needs \"node\", a string (and optional \"force\", a boolean)");
	if (!inventory_node_name_valid(node))
		return fail(2, "\"%s\" is not a node name: %s", ESCAPED(node), INVENTORY_NODE_NAME_RULE);
	bool was_connected = false;
	int r = agents_forget(a->agents, node, json_is_true(force), &was_connected);
	if (r == -ENOENT)
		return fail(2, "no node %s is known", node);
	if (r == -EBUSY)
		return fail(1, "node %s is connected: stop its agent first, or --force (it comes back if its agent "
			       "keeps running)",
			    node);
	if (r < 0)
		return fail(1, "forgetting node %s: %s", node, store_error(a->store));
	return ok(json_pack("{s:s,s:b}", "node", node, "was_connected", was_connected));
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

static json_t *cmd_flows(struct admin *a, json_t *req)
{
	struct flow_query q = {.mode = FLOW_QUERY_REPORT};
	const char *mode = NULL;
	int64_t since_s = -1;
	if (!opt_string(req, "mode", &mode) || !opt_string(req, "node", &q.node) ||
	    !opt_string(req, "group", &q.group) || !opt_string(req, "verdict", &q.verdict))
		return fail(2, "\"mode\", \"node\", \"group\" and \"verdict\" must be strings");
	if (!opt_count(req, "since_seconds", &since_s) || !opt_count(req, "limit", &q.limit) ||
	    !opt_count(req, "after_id", &q.after_id))
		return fail(2, "\"since_seconds\", \"limit\" and \"after_id\" must be integers >= 0");
	if (mode && strcmp(mode, "follow") == 0)
		q.mode = FLOW_QUERY_FOLLOW;
	else if (mode && strcmp(mode, "rules") == 0)
		q.mode = FLOW_QUERY_RULES;
	else if (mode && strcmp(mode, "report") != 0)
		return fail(2, "mode \"%s\": expected report, follow or rules", mode);
	/* Allowed packets are counted per rule, never reported per flow. */
	bool allow_ok = q.mode == FLOW_QUERY_RULES;
	int verdict = vocab_find(report_verdict_words, q.verdict);
	if (q.verdict && (verdict < 0 || (verdict == VERDICT_ACCEPT && !allow_ok)))
		return fail(2, "verdict \"%s\": expected deny or audit%s", q.verdict, allow_ok ? " or allow" : "");
	int64_t now = clock_wall_ms();
	q.since_ms = since_s >= 0 && since_s < now / 1000 ? now - since_s * 1000 : 0;
	json_t *out = NULL;
	int r = store_query_flows(a->store, &q, &out);
	if (r == -ETIMEDOUT)
		return fail(1, "reading flows: %s, so that the controller goes on serving its agents; narrow it "
			       "(--since, --node, --group, --verdict) or raise the controller's --flow-query-ms",
			    store_error(a->store));
	if (r < 0)
		return fail(1, "reading flows: %s", store_error(a->store));
	json_object_set_new(out, "time", json_integer(now));
	return ok(out);
}

static json_t *handle(struct admin *a, const void *data, size_t len)
{
	json_error_t jerr;
	json_t *req = json_loadb(data, len, 0, &jerr);
	json_t *reply;
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	json_t *v = json_object_get(req, "v");
	if (!json_is_object(req) || !cmd) {
		a->malformed++;
		reply = fail(2, "malformed request: %s", req ? "no \"cmd\"" : jerr.text);
	} else if (!json_is_integer(v) || json_integer_value(v) != ADMIN_VERSION) {
		reply = fail(2, "admin protocol version mismatch: the controller speaks %d", ADMIN_VERSION);
	} else if (strcmp(cmd, "policy.apply") == 0) {
		reply = cmd_apply(a, req);
	} else if (strcmp(cmd, "policy.history") == 0) {
		reply = cmd_history(a, req);
	} else if (strcmp(cmd, "policy.show") == 0) {
		reply = cmd_show(a, req);
	} else if (strcmp(cmd, "policy.rollback") == 0) {
		reply = cmd_rollback(a, req);
	} else if (strcmp(cmd, "status") == 0) {
		reply = cmd_status(a, req);
	} else if (strcmp(cmd, "endpoints") == 0) {
		reply = cmd_endpoints(a, req);
	} else if (strcmp(cmd, "flows") == 0) {
		reply = cmd_flows(a, req);
	} else if (strcmp(cmd, "nodes.forget") == 0) {
		reply = cmd_nodes_forget(a, req);
	} else {
		reply = fail(2, "unknown command \"%s\"", ESCAPED(cmd));
	}
	json_decref(req);
	return reply;
}

void admin_dispatch(struct admin *a)
{
	for (int i = 0; i < 100; i++) {
		zmq_msg_t m;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, a->rep, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&m);
			return;
		}
		/* REP: one frame requests only; drain any extra frames. */
		bool extra = zmq_msg_more(&m);
		json_t *reply;
		if (extra) {
			while (zmq_msg_more(&m)) {
				zmq_msg_close(&m);
				zmq_msg_init(&m);
				if (zmq_msg_recv(&m, a->rep, 0) < 0)
					break;
			}
			a->malformed++;
			reply = fail(2, "malformed request: more than one frame");
		} else {
			reply = handle(a, zmq_msg_data(&m), zmq_msg_size(&m));
		}
		zmq_msg_close(&m);
		if (!reply) /* a handler's json_pack refused a string: an answer all the same */
			reply = fail(1, "the controller could not encode its reply");
		char *text = json_dumps(reply, JSON_COMPACT);
		json_decref(reply);
		if (!text)
			abort();
		if (zmq_send(a->rep, text, strlen(text), 0) < 0)
			log_warn("admin: sending a reply: %s", zmq_strerror(errno));
		free(text);
	}
}

/* ---- life cycle ---- */

struct admin *admin_new(void *zctx, const char *endpoint, struct store *s, struct compiler *c, struct agents *ag,
			char **err)
{
	struct admin *a = xcalloc(1, sizeof(*a));
	a->store = s;
	a->compiler = c;
	a->agents = ag;
	*err = NULL;
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
	a->rep = zmq_socket(zctx, ZMQ_REP);
	int zero = 0;
	int64_t max = ADMIN_MAX_MSG;
	mode_t old_mask = umask(0177); /* ipc binds in this thread: the socket file is made 0600 */
	bool ok = a->rep && zmq_setsockopt(a->rep, ZMQ_LINGER, &zero, sizeof(zero)) == 0 &&
		  zmq_setsockopt(a->rep, ZMQ_MAXMSGSIZE, &max, sizeof(max)) == 0 && zmq_bind(a->rep, endpoint) == 0;
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
	return a;
}

void admin_free(struct admin *a)
{
	if (!a)
		return;
	if (a->rep)
		zmq_close(a->rep);
	free(a);
}

void admin_poll_item(struct admin *a, zmq_pollitem_t *item)
{
	*item = (zmq_pollitem_t){.socket = a->rep, .events = ZMQ_POLLIN};
}
