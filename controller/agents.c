/* The agents' endpoint (see agents.h). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bulkhead/bundle.h"
#include "bulkhead/escape.h"
#include "bulkhead/fileio.h"
#include "bulkhead/inventory.h"
#include "bulkhead/keys.h"
#include "bulkhead/log.h"
#include "bulkhead/proto.h"
#include "agents.h"
#include "flowcheck.h"
#include "flownames.h"
#include "labelrules.h"

#define ROUTING_ID_MAX 256
#define ALLOW_KEY_LEN 40
#define ALLOW_REREAD_MS 1000
/* Without a handshake to prompt it, a file rewritten in place is noticed
 * this late (re-reading 1000 nodes' files costs ~12 ms). */
#define ALLOW_REREAD_IDLE_MS 10000
#define ALLOW_LABELS_MAX (1 << 20)
/* An agent that has not acknowledged a bundle by then gets it again. */
#define INFLIGHT_TIMEOUT_MS 10000
/* How often flows past the retention are deleted, in chunks of this many
 * rows per table this far apart (other work runs between them). */
#define FLOW_PRUNE_MS (3600 * 1000)
#define FLOW_PRUNE_CHUNK 5000
#define FLOW_PRUNE_CHUNK_GAP_MS 50
/* A batch's key outlives its flows by this much (by the controller's own
 * receive time), so a clock stepped back cannot let a resent batch whose
 * key was pruned be stored twice. */
#define FLOW_KEY_MARGIN_MS (86400 * 1000)
/* How far ahead of the controller's clock a flow's time may be; later
 * times are the controller's (retention would never delete them). */
#define FLOW_FUTURE_MS (5 * 60 * 1000)
/* Each reason a node's records are not stored is logged once a minute. */
#define FLOW_DROP_LOG_MS (60 * 1000)
/* A connection that has not finished its handshake by then is closed:
 * until it has, it may hold a message of up to PROTO_MAX_AGENT_MSG. */
#define HANDSHAKE_MS 10000
/* How long one dispatch may read messages before the loop moves on. */
#define DISPATCH_BUDGET_MS 50
/* Refusals of a flood are logged at most this often (the rest counted). */
#define REFUSAL_LOG_MS 10000
/* Where libzmq asks about CURVE handshakes (RFC 27). */
#define ZAP_ENDPOINT "inproc://zeromq.zap.01"

struct node_link {
	char *node;
	bool connected;
	uint8_t rid[ROUTING_ID_MAX]; /* the session's ZeroMQ routing id */
	size_t rid_len;
	int64_t last_heard_ms; /* 0: never */
	int64_t stalled_at_heard_ms; /* agents->stalled_ms then */
	char *agent_version;
	/* What the agent holds, as it last said. */
	int64_t held_revision; /* 0: nothing */
	char held_hash[BUNDLE_HASH_HEX + 1];
	json_t *held_bundle; /* its JSON when we sent it: the base for deltas */
	/* Sent, not yet acknowledged. */
	int64_t inflight_revision, inflight_since_ms;
	char inflight_hash[BUNDLE_HASH_HEX + 1];
	json_t *inflight_bundle;
	json_t *errors; /* strings from the last ACK */
	bool ack_ok;
	struct flowcheck_bucket flow_bucket;		 /* its rate allowance */
	int64_t drop_logged_ms[STORE_DROP_COUNT]; /* monotonic; 0: never */
	/* Its last endpoint list was refused (the one before stays in force),
	 * or the one in force breaks its label rules: why, for status. */
	char *list_error;
	json_t *refused_list; /* tried again when its label rules change */
	struct node_link *next;
};

struct allow_entry {
	char key[ALLOW_KEY_LEN + 1];
	char *node;
	/* DIR/NODE.labels (labelrules.h): NULL when there is none; else its
	 * text (or why it could not be read) and its rules, NULL when it is
	 * invalid: then every list of the node is refused (fail closed). */
	char *labels_text;
	struct labelrules *labels;
};

struct agents {
	const struct agents_options *o;
	struct compiler *compiler;
	struct store *store;
	void *router, *zap;
	struct node_link *nodes;
	struct allow_entry *allow;
	size_t n_allow;
	struct timespec allow_mtime;
	int64_t allow_read_ms; /* monotonic */
	char *allow_said;      /* the problems last logged, one per line */
	bool allow_loaded;     /* read at least once */
	int64_t last_heartbeat_ms;
	int64_t last_tick_ms, stalled_ms; /* how long the loop was held up, all told */
	int64_t last_prune_ms, last_prune_chunk_ms; /* monotonic; 0: not yet */
	bool prune_pending;			    /* more to delete: another chunk soon */
	int64_t pruned_rows;
	size_t n_nodes;
	int64_t too_many_logged_ms; /* monotonic; when refusing a node past max_nodes was last logged */
	uint64_t too_many_unlogged;
	struct {
		uint64_t malformed, unexpected, refused, resync, send_failed, endpoints_rejected, bundles,
			deltas, acks, flow_batches, flow_batches_again, flow_store_failed, flow_batches_expired,
			flow_batches_rejected, flow_records_dropped, nodes_refused, ack_results_ignored, errors_cut;
	} count;
};

/* ---- the allow-list: DIR/NODE.key holds NODE's agent public key, and
 * DIR/NODE.labels (optional) the labels NODE may report ---- */

static void allow_free(struct allow_entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].node);
		free(v[i].labels_text);
		labelrules_free(v[i].labels);
	}
	free(v);
}

static void allow_clear(struct agents *a)
{
	allow_free(a->allow, a->n_allow);
	a->allow = NULL;
	a->n_allow = 0;
}

static const struct allow_entry *allow_entry_for(const struct allow_entry *v, size_t n, const char *node)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].node, node) == 0)
			return &v[i];
	return NULL;
}

/* e's NODE.labels, if there is one; problems go to errs. */
static void allow_read_labels(struct agents *a, struct allow_entry *e, FILE *errs)
{
	char path[4096], name[512];
	snprintf(path, sizeof(path), "%s/%s.labels", a->o->allow_dir, e->node);
	snprintf(name, sizeof(name), "%s.labels", e->node);
	char *text;
	size_t len;
	int r = fileio_read(path, ALLOW_LABELS_MAX, &text, &len);
	if (r == -ENOENT)
		return;
	if (r < 0) {
		const char *why = r == -EFBIG ? "larger than 1 MiB" : fileio_strerror(r);
		fprintf(errs, "%s: %s; every endpoint list of node %s is refused\n", path, why, e->node);
		e->labels_text = xstrdup(why);
		return;
	}
	e->labels_text = text;
	struct diag d;
	diag_init(&d, path);
	e->labels = labelrules_parse(name, text, len, &d);
	if (!e->labels) {
		fprintf(errs, "%s: invalid; every endpoint list of node %s is refused until it is fixed\n",
			path, e->node);
		diag_print(&d, errs);
	}
	diag_release(&d);
}

static void allow_recheck(struct agents *a, struct node_link *n);
static struct node_link *node_get(struct agents *a, const char *node);

/* Whether node's label rules differ between two allow-lists. */
static bool allow_labels_changed(const struct allow_entry *was, size_t n_was, const struct allow_entry *now,
				 size_t n_now, const char *node)
{
	const struct allow_entry *o = allow_entry_for(was, n_was, node),
				 *e = allow_entry_for(now, n_now, node);
	if (!o || !e)
		return o != e;
	if (!o->labels_text || !e->labels_text)
		return o->labels_text != e->labels_text;
	return strcmp(o->labels_text, e->labels_text) != 0;
}

/* Re-reads the directory when it changed (a key added, removed or
 * renamed), and otherwise when it was read longer than max_age_ms ago (a
 * file rewritten in place leaves the directory's mtime alone), so agents
 * can be added and keys and label rules replaced without a restart. The nodes whose label
 * rules changed are checked again (allow_recheck). Each problem is logged
 * when it appears, not at every reading. */
static void allow_reload(struct agents *a, int64_t max_age_ms)
{
	struct stat st;
	int64_t now = clock_mono_ms();
	bool dir_ok = stat(a->o->allow_dir, &st) == 0;
	if (dir_ok && a->allow_loaded && st.st_mtim.tv_sec == a->allow_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == a->allow_mtime.tv_nsec && now - a->allow_read_ms < max_age_ms)
		return;
	if (dir_ok)
		a->allow_mtime = st.st_mtim;
	a->allow_read_ms = now;
	struct allow_entry *was = a->allow;
	size_t n_was = a->n_allow;
	bool had = a->allow_loaded;
	a->allow_loaded = true;
	a->allow = NULL;
	a->n_allow = 0;

	char *said = NULL;
	size_t said_len = 0;
	FILE *errs = open_memstream(&said, &said_len);
	if (!errs)
		abort();
	struct dirent **names = NULL;
	int n = dir_ok ? scandir(a->o->allow_dir, &names, NULL, alphasort) : -1;
	if (n < 0)
		fprintf(errs, "agent keys %s: %s; every agent is refused\n", a->o->allow_dir,
			strerror(errno));
	a->allow = xcalloc(n > 0 ? (size_t)n : 1, sizeof(*a->allow));
	for (int i = 0; i < n; i++) {
		const char *fn = names[i]->d_name;
		size_t len = strlen(fn);
		if (len > 4 && strcmp(fn + len - 4, ".key") == 0) {
			char path[4096], key[ALLOW_KEY_LEN + 1], *err = NULL;
			snprintf(path, sizeof(path), "%s/%s", a->o->allow_dir, fn);
			char *node = strndup(fn, len - 4);
			if (!node)
				abort();
			if (!inventory_node_name_valid(node)) {
				fprintf(errs, "agent key %s/%s: \"%s\" is not a node name (%s); ignored\n", a->o->allow_dir,
					ESCAPED(fn), ESCAPED(node), INVENTORY_NODE_NAME_RULE);
				free(node);
			} else if (keys_read(path, key, &err) < 0) {
				fprintf(errs, "agent key %s\n", err ? ESCAPED(err) : "unreadable");
				free(node);
			} else {
				struct allow_entry *e = &a->allow[a->n_allow++];
				memcpy(e->key, key, sizeof(e->key));
				e->node = node;
				allow_read_labels(a, e, errs);
			}
			free(err);
		}
		free(names[i]);
	}
	free(names);
	if (fclose(errs) != 0)
		abort();
	if (!a->allow_said || strcmp(a->allow_said, said) != 0) {
		for (const char *line = said, *end; (end = strchr(line, '\n')); line = end + 1)
			log_error("%.*s", (int)(end - line), line);
	}
	free(a->allow_said);
	a->allow_said = said;
	if (!had || a->n_allow != n_was)
		log_info("agent keys: %zu node(s) allowed from %s", a->n_allow, a->o->allow_dir);

	/* Every node known, then those whose rules changed (all of them at
	 * the first reading: the lists resumed from the store too). */
	for (const char *const *name = compiler_nodes(a->compiler); *name; name++)
		node_get(a, *name);
	for (struct node_link *nl = a->nodes; nl; nl = nl->next)
		if (!had || allow_labels_changed(was, n_was, a->allow, a->n_allow, nl->node))
			allow_recheck(a, nl);
	allow_free(was, n_was);
}

/* Whether node may report these endpoints' labels (its NODE.labels): 0,
 * or -EPERM with why in diag. Without CURVE there is no allow-list and no
 * rule. */
static int allow_check_labels(struct agents *a, const char *node, json_t *endpoints, struct diag *d)
{
	if (a->o->insecure)
		return 0;
	const struct allow_entry *e = allow_entry_for(a->allow, a->n_allow, node);
	if (!e) {
		diag_add(d, "", "node %s is not in the agent allow-list %s (any more)", node,
			 a->o->allow_dir);
		return -EPERM;
	}
	if (!e->labels_text)
		return 0;
	if (!e->labels) {
		diag_add(d, "",
			 "%s/%s.labels is invalid or unreadable: every endpoint list of node %s is refused",
			 a->o->allow_dir, node, node);
		return -EPERM;
	}
	return labelrules_check(e->labels, endpoints, d);
}

static const char *allow_lookup(struct agents *a, const char *key)
{
	allow_reload(a, ALLOW_REREAD_MS);
	const char *found = NULL;
	for (size_t i = 0; i < a->n_allow; i++) {
		if (strcmp(a->allow[i].key, key) != 0)
			continue;
		if (found) {
			log_error("agent key %.8s… is listed for nodes %s and %s; refused", key, found,
				  a->allow[i].node);
			return NULL;
		}
		found = a->allow[i].node;
	}
	return found;
}

/* ZAP (RFC 27): libzmq asks us about every CURVE handshake; the answer's
 * user id is the node name the key is bound to, which every later message
 * carries as its "User-Id" property. */
static void zap_handle(struct agents *a)
{
	zmq_msg_t part[8];
	int n = 0, more = 1;
	while (more) {
		zmq_msg_t m;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, a->zap, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&m);
			break;
		}
		more = zmq_msg_more(&m);
		if (n < 8)
			part[n++] = m;
		else
			zmq_msg_close(&m);
	}
	if (n < 6) {
		for (int i = 0; i < n; i++)
			zmq_msg_close(&part[i]);
		return;
	}
	const char *status = "400", *text = "unknown key", *node = NULL;
	char z85[ALLOW_KEY_LEN + 1] = "";
	if (n == 7 && zmq_msg_size(&part[5]) == 5 && memcmp(zmq_msg_data(&part[5]), "CURVE", 5) == 0 &&
	    zmq_msg_size(&part[6]) == 32) {
		zmq_z85_encode(z85, zmq_msg_data(&part[6]), 32);
		node = allow_lookup(a, z85);
		if (node) {
			status = "200";
			text = "OK";
		}
	} else {
		text = "CURVE required";
	}
	if (!node) {
		a->count.refused++;
		log_warn("refused an agent connection: %s (key %.8s…)", text, z85[0] ? z85 : "none");
	}
	zmq_send(a->zap, "1.0", 3, ZMQ_SNDMORE);
	zmq_send(a->zap, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), ZMQ_SNDMORE);
	zmq_send(a->zap, status, 3, ZMQ_SNDMORE);
	zmq_send(a->zap, text, strlen(text), ZMQ_SNDMORE);
	zmq_send(a->zap, node ? node : "", node ? strlen(node) : 0, ZMQ_SNDMORE);
	zmq_send(a->zap, "", 0, 0);
	for (int i = 0; i < n; i++)
		zmq_msg_close(&part[i]);
}

/* ---- nodes ---- */

/* Where node is, or would go, in the sorted list. */
static struct node_link **node_slot(struct agents *a, const char *node)
{
	struct node_link **p = &a->nodes;
	for (; *p && strcmp((*p)->node, node) < 0; p = &(*p)->next)
		;
	return p;
}

static struct node_link *node_find(struct agents *a, const char *node)
{
	struct node_link *n = *node_slot(a, node);
	return n && strcmp(n->node, node) == 0 ? n : NULL;
}

/* The node, known from now on (it counts against max_nodes). */
static struct node_link *node_get(struct agents *a, const char *node)
{
	struct node_link **p = node_slot(a, node);
	if (*p && strcmp((*p)->node, node) == 0)
		return *p;
	struct node_link *n = xcalloc(1, sizeof(*n));
	n->node = xstrdup(node);
	n->errors = json_array();
	n->next = *p;
	*p = n;
	a->n_nodes++;
	return n;
}

static void node_heard(struct agents *a, struct node_link *n)
{
	n->last_heard_ms = clock_mono_ms();
	n->stalled_at_heard_ms = a->stalled_ms;
}

/* Whether n has been silent too long. Time the controller's loop was held
 * up (a large message parsed, a slow query) is not the node's silence:
 * while it lasts nothing is read. It is forgiven up to half the silence,
 * so a controller kept busy still finds a dead node, at most twice as late. */
static bool node_silent(const struct agents *a, const struct node_link *n, int64_t now)
{
	int64_t silent = now - n->last_heard_ms, held = a->stalled_ms - n->stalled_at_heard_ms;
	return silent - (held < silent / 2 ? held : silent / 2) > (int64_t)a->o->heartbeat_ms * PROTO_DEAD_HEARTBEATS;
}

static struct node_link *node_by_rid(struct agents *a, const void *rid, size_t len)
{
	for (struct node_link *n = a->nodes; n; n = n->next)
		if (n->connected && n->rid_len == len && memcmp(n->rid, rid, len) == 0)
			return n;
	return NULL;
}

static void node_clear_inflight(struct node_link *n)
{
	json_decref(n->inflight_bundle);
	n->inflight_bundle = NULL;
	n->inflight_revision = 0;
	n->inflight_hash[0] = '\0';
}

static void node_free(struct node_link *n)
{
	node_clear_inflight(n);
	free(n->list_error);
	json_decref(n->refused_list);
	json_decref(n->held_bundle);
	json_decref(n->errors);
	free(n->agent_version);
	free(n->node);
	free(n);
}

int agents_forget(struct agents *a, const char *node, bool force, bool *was_connected)
{
	struct node_link **p = node_slot(a, node), *n = *p;
	if (!n || strcmp(n->node, node) != 0)
		return -ENOENT;
	if (n->connected && !force)
		return -EBUSY;
	/* The store first: should it fail, the node is still whole. */
	if (store_forget_node(a->store, node) < 0) {
		log_error("forgetting node %s: %s", node, store_error(a->store));
		return -EIO;
	}
	*was_connected = n->connected;
	compiler_forget_node(a->compiler, node);
	*p = n->next;
	a->n_nodes--;
	log_info("node %s forgotten%s; its endpoints leave every group", node,
		 n->connected ? " while connected (its agent is told to say HELLO again)" : "");
	node_free(n);
	return 0;
}

/* ---- sending ---- */

/* Takes the reference to body. */
static bool send_to(struct agents *a, const uint8_t *rid, size_t rid_len, enum proto_type t, json_t *body)
{
	size_t len;
	char *text = proto_encode(body, &len);
	if (!text)
		abort();
	const char *type = proto_type_name(t);
	bool ok = zmq_send(a->router, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
		  zmq_send(a->router, type, strlen(type), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
		  zmq_send(a->router, text, len, ZMQ_DONTWAIT) >= 0;
	free(text);
	if (!ok)
		a->count.send_failed++;
	return ok;
}

static bool send_node(struct agents *a, struct node_link *n, enum proto_type t, json_t *body)
{
	bool ok = send_to(a, n->rid, n->rid_len, t, body);
	if (!ok)
		log_warn("node %s: sending %s: %s", n->node, proto_type_name(t), zmq_strerror(errno));
	return ok;
}

/* Sends n what it lacks: nothing, a revision stamp (an empty DELTA), a set
 * delta against what it holds, or the whole bundle. */
static void push_node(struct agents *a, struct node_link *n)
{
	const char *hash;
	json_t *want = compiler_bundle(a->compiler, n->node, &hash);
	int64_t rev = compiler_revision(a->compiler);
	if (!n->connected || !want)
		return;
	if (n->inflight_revision) {
		if (n->inflight_revision == rev && strcmp(n->inflight_hash, hash) == 0 &&
		    clock_mono_ms() - n->inflight_since_ms < INFLIGHT_TIMEOUT_MS)
			return; /* on its way */
	}
	if (n->held_revision == rev && strcmp(n->held_hash, hash) == 0)
		return;

	json_t *sets = NULL;
	if (strcmp(n->held_hash, hash) == 0)
		sets = json_array();
	else if (n->held_bundle)
		sets = proto_delta_make(n->held_bundle, want);
	bool ok;
	if (sets) {
		size_t n_sets = json_array_size(sets); /* the message takes sets, and is freed once sent */
		ok = send_node(a, n, PROTO_DELTA,
			       json_pack("{s:I,s:s,s:s,s:o}", "revision", (json_int_t)rev, "base", n->held_hash, "hash",
					 hash, "sets", sets));
		a->count.deltas++;
		log_info("node %s: delta %.12s → %.12s (revision %lld, %zu set(s))", n->node, n->held_hash, hash,
			 (long long)rev, n_sets);
	} else {
		ok = send_node(a, n, PROTO_BUNDLE, json_pack("{s:I,s:O}", "revision", (json_int_t)rev, "bundle", want));
		a->count.bundles++;
		log_info("node %s: bundle %.12s (revision %lld)", n->node, hash, (long long)rev);
	}
	node_clear_inflight(n);
	if (!ok)
		return;
	n->inflight_revision = rev;
	n->inflight_since_ms = clock_mono_ms();
	memcpy(n->inflight_hash, hash, sizeof(n->inflight_hash));
	n->inflight_bundle = json_incref(want);
}

void agents_push(struct agents *a)
{
	for (struct node_link *n = a->nodes; n; n = n->next)
		push_node(a, n);
}

/* ---- receiving ---- */

static void set_held(struct node_link *n, json_t *revision, json_t *hash)
{
	n->held_revision = json_is_integer(revision) ? json_integer_value(revision) : 0;
	snprintf(n->held_hash, sizeof(n->held_hash), "%s", json_is_string(hash) ? json_string_value(hash) : "");
}

/* Why n's endpoint list is not what it reported (NULL: it is): the first
 * problem in d, for status. */
static void node_set_list_error(struct node_link *n, const char *what, const struct diag *d)
{
	free(n->list_error);
	n->list_error = NULL;
	if (!what)
		return;
	const char *first = d && d->n ? d->v[0].message : "see the controller's log";
	if (asprintf(&n->list_error, "%s: %s%s", what, first,
		     d && d->n > 1 ? " (and more: see the controller's log)" : "") < 0)
		abort();
}

static void take_endpoints(struct agents *a, struct node_link *n, json_t *endpoints)
{
	struct diag d;
	diag_init(&d, n->node);
	/* A label the node may not claim refuses the whole list, as a
	 * malformed one: leaving the label out instead could take an
	 * endpoint out of a deny group (fail closed). */
	int r = allow_check_labels(a, n->node, endpoints, &d);
	if (r == 0)
		r = compiler_set_endpoints(a->compiler, n->node, endpoints, &d);
	json_decref(n->refused_list);
	n->refused_list = NULL;
	if (r < 0) {
		a->count.endpoints_rejected++;
		log_error("node %s: endpoint list rejected; keeping the previous one:", n->node);
		diag_print(&d, stderr);
		node_set_list_error(n, "endpoint list refused, the previous one kept", &d);
		n->refused_list = json_incref(endpoints);
	} else {
		node_set_list_error(n, NULL, NULL);
	}
	if (r > 0) {
		char *text = json_dumps(endpoints, JSON_COMPACT);
		if (!text || store_put_inventory(a->store, n->node, text) < 0)
			log_error("node %s: storing its endpoints: %s", n->node, store_error(a->store));
		free(text);
		log_info("node %s: %zu endpoint(s)", n->node, json_array_size(endpoints));
	}
	diag_release(&d);
}

/* n's label rules changed: a list refused before is tried again (they may
 * admit it now), and the list in force is checked against them. One that
 * breaks them stays in force, since dropping it could take endpoints out
 * of deny groups; status says so until the node reports one that keeps
 * to them. */
static void allow_recheck(struct agents *a, struct node_link *n)
{
	if (n->refused_list) {
		json_t *list = json_incref(n->refused_list);
		take_endpoints(a, n, list);
		json_decref(list);
		return;
	}
	json_t *eps = compiler_endpoints(a->compiler, n->node);
	if (!eps)
		return;
	struct diag d;
	diag_init(&d, n->node);
	if (allow_check_labels(a, n->node, eps, &d) < 0) {
		log_error("node %s: its endpoint list in force breaks its label rules; kept until the node "
			  "reports one "
			  "that keeps to them:",
			  n->node);
		diag_print(&d, stderr);
		node_set_list_error(n, "the endpoint list in force breaks the node's label rules (kept)", &d);
	} else {
		node_set_list_error(n, NULL, NULL);
	}
	diag_release(&d);
}

/* "agent": a version, shown in status and logged. */
static bool agent_version_valid(const char *v)
{
	size_t len = strlen(v);
	if (len == 0 || len > PROTO_VERSION_MAX)
		return false;
	for (; *v; v++)
		if (*v < 0x21 || *v > 0x7e)
			return false;
	return true;
}

static void refuse_hello(struct agents *a, const uint8_t *rid, size_t rid_len, const char *reason)
{
	a->count.refused++;
	send_to(a, rid, rid_len, PROTO_REFUSED, json_pack("{s:s}", "reason", reason));
}

/* Whether a HELLO may make node known: with --insecure anyone may say
 * HELLO under any name, so their number is bounded (the allow-list bounds
 * it with CURVE). A flood of refusals is logged now and then. */
static bool node_room(struct agents *a, const char *node)
{
	if (!a->o->insecure || !a->o->max_nodes || a->n_nodes < a->o->max_nodes || node_find(a, node))
		return true;
	a->count.nodes_refused++;
	int64_t now = clock_mono_ms();
	if (a->too_many_logged_ms && now - a->too_many_logged_ms < REFUSAL_LOG_MS) {
		a->too_many_unlogged++;
		return false;
	}
	log_warn("refused HELLO for a new node \"%s\": %zu nodes are known, the most --max-nodes allows "
		 "(`bulkhead nodes forget NODE` drops one)%s",
		 node, a->n_nodes, a->too_many_unlogged ? "; more refused since the last such line" : "");
	a->too_many_logged_ms = now;
	a->too_many_unlogged = 0;
	return false;
}

static void on_hello(struct agents *a, const uint8_t *rid, size_t rid_len, const char *user_id, json_t *body)
{
	const char *node = json_string_value(json_object_get(body, "node"));
	const char *version = json_string_value(json_object_get(body, "agent"));
	char reason[512];
	if (!inventory_node_name_valid(node)) {
		log_warn("refused HELLO for node \"%s\": not a node name", ESCAPED(node));
		snprintf(reason, sizeof(reason), "invalid node name: %s", INVENTORY_NODE_NAME_RULE);
		refuse_hello(a, rid, rid_len, reason);
		return;
	}
	if (!a->o->insecure && (!user_id || strcmp(user_id, node) != 0)) {
		log_warn("refused HELLO for node \"%s\" from the key of node \"%s\"", node, user_id ? user_id : "?");
		snprintf(reason, sizeof(reason), "this key belongs to node \"%s\", not \"%s\"", user_id ? user_id : "?",
			 node);
		refuse_hello(a, rid, rid_len, reason);
		return;
	}
	if (!agent_version_valid(version)) {
		log_warn("refused HELLO for node %s: agent version \"%s\" is not 1-%d printable characters", node,
			 ESCAPED(version), PROTO_VERSION_MAX);
		snprintf(reason, sizeof(reason), "\"agent\" must be a version of 1-%d printable ASCII characters",
			 PROTO_VERSION_MAX);
		refuse_hello(a, rid, rid_len, reason);
		return;
	}
	if (!node_room(a, node)) {
		snprintf(reason, sizeof(reason), "the controller knows as many nodes as --max-nodes allows (%u)",
			 a->o->max_nodes);
		refuse_hello(a, rid, rid_len, reason);
		return;
	}
	/* A routing id names one connection, and a connection speaks for one
	 * node: one that held this id before (its agent gone, the id taken
	 * over; or under another name with --insecure) has lost its session,
	 * and gets nothing more on it. */
	for (struct node_link *o = a->nodes; o; o = o->next) {
		if (!o->connected || strcmp(o->node, node) == 0 || o->rid_len != rid_len ||
		    memcmp(o->rid, rid, rid_len) != 0)
			continue;
		o->connected = false;
		node_clear_inflight(o);
		log_warn("node %s: its connection now says HELLO as node %s; marked down", o->node, node);
	}
	struct node_link *n = node_get(a, node);
	if (n->connected && (n->rid_len != rid_len || memcmp(n->rid, rid, rid_len) != 0))
		log_info("node %s: a new connection replaces the old one (agent restarted?)", node);
	memcpy(n->rid, rid, rid_len);
	n->rid_len = rid_len;
	n->connected = true;
	node_heard(a, n);
	free(n->agent_version);
	n->agent_version = xstrdup(version);
	set_held(n, json_object_get(body, "revision"), json_object_get(body, "hash"));
	json_decref(n->held_bundle);
	n->held_bundle = NULL;
	node_clear_inflight(n);
	json_array_clear(n->errors);
	n->ack_ok = true;
	log_info("node %s: HELLO from agent %s holding revision %lld (%.12s)", node, n->agent_version,
		 (long long)n->held_revision, n->held_hash[0] ? n->held_hash : "nothing");
	take_endpoints(a, n, json_object_get(body, "endpoints"));
	/* It holds what we would send: remember its JSON as the delta base. */
	const char *hash;
	json_t *want = compiler_bundle(a->compiler, node, &hash);
	if (want && strcmp(hash, n->held_hash) == 0)
		n->held_bundle = json_incref(want);
}

/* An error string from an agent as status shows it: cut at PROTO_ERROR_MAX
 * bytes (at a character's start; escaping is the printer's). */
static json_t *agent_error(struct agents *a, const char *prefix, const char *error)
{
	size_t len = strlen(error);
	if (len <= PROTO_ERROR_MAX)
		return json_sprintf("%s%s", prefix, error);
	a->count.errors_cut++;
	while (len > PROTO_ERROR_MAX || (len > 0 && ((unsigned char)error[len] & 0xc0) == 0x80))
		len--;
	return json_sprintf("%s%.*s... (cut at %d bytes)", prefix, (int)len, error, PROTO_ERROR_MAX);
}

/* The names of the endpoints node reported, as an object's keys. */
static json_t *endpoint_names(struct agents *a, const char *node)
{
	json_t *names = json_object();
	size_t i;
	json_t *e;
	json_array_foreach(compiler_endpoints(a->compiler, node), i, e)
		json_object_set(names, json_string_value(json_object_get(e, "name")), json_true());
	return names;
}

static void on_ack(struct agents *a, struct node_link *n, json_t *body)
{
	a->count.acks++;
	set_held(n, json_object_get(body, "revision"), json_object_get(body, "hash"));
	json_decref(n->held_bundle);
	n->held_bundle = NULL;
	if (n->inflight_bundle && strcmp(n->inflight_hash, n->held_hash) == 0)
		n->held_bundle = json_incref(n->inflight_bundle);
	node_clear_inflight(n);
	n->ack_ok = json_is_true(json_object_get(body, "ok"));
	json_array_clear(n->errors);
	json_t *err = json_object_get(body, "error");
	if (json_is_string(err))
		json_array_append_new(n->errors, agent_error(a, "", json_string_value(err)));
	/* An endpoint's error is shown under its name: only for endpoints the
	 * node reported (one just removed from its list is gone anyway). */
	size_t i, ignored = 0;
	json_t *e, *names = endpoint_names(a, n->node);
	json_array_foreach(json_object_get(body, "endpoints"), i, e)
	{
		const char *name = json_string_value(json_object_get(e, "name"));
		json_t *ee = json_object_get(e, "error");
		if (!json_is_string(ee))
			continue;
		if (!json_object_get(names, name)) {
			ignored++;
			continue;
		}
		char prefix[NAME_MAX_LEN + 3];
		snprintf(prefix, sizeof(prefix), "%s: ", name);
		json_array_append_new(n->errors, agent_error(a, prefix, json_string_value(ee)));
	}
	json_decref(names);
	if (ignored) {
		a->count.ack_results_ignored += ignored;
		log_warn("node %s: ignored %zu result(s) in its ACK for endpoints it did not report", n->node, ignored);
	}
	if (n->ack_ok)
		log_info("node %s: applied revision %lld (%.12s)", n->node, (long long)n->held_revision, n->held_hash);
	else
		log_warn("node %s: revision %lld not applied everywhere (%zu error(s))", n->node,
			 (long long)n->held_revision, json_array_size(n->errors));
}

/* Flows older than this (unix ms) are not kept; 0: all are. */
static int64_t flows_keep_after(const struct agents *a)
{
	return a->o->flow_retention_ms ? clock_wall_ms() - a->o->flow_retention_ms : 0;
}

/* The retention: at start, then hourly, a chunk at a time. */
static void flows_prune(struct agents *a, int64_t now_mono)
{
	if (!a->o->flow_retention_ms)
		return;
	bool due = !a->last_prune_ms || now_mono - a->last_prune_ms >= FLOW_PRUNE_MS;
	if (!due && !(a->prune_pending && now_mono - a->last_prune_chunk_ms >= FLOW_PRUNE_CHUNK_GAP_MS))
		return;
	if (due) {
		a->last_prune_ms = now_mono;
		a->pruned_rows = 0;
	}
	a->last_prune_chunk_ms = now_mono;
	int64_t removed = 0, keep_after = flows_keep_after(a);
	int r = store_prune_flows(a->store, keep_after, keep_after - FLOW_KEY_MARGIN_MS, FLOW_PRUNE_CHUNK, &removed);
	if (r < 0) {
		log_error("pruning flows older than %lld s: %s", (long long)(a->o->flow_retention_ms / 1000),
			  store_error(a->store));
		a->prune_pending = false;
		return;
	}
	a->pruned_rows += removed;
	a->prune_pending = r > 0;
	if (!a->prune_pending && a->pruned_rows)
		log_info("pruned %lld flow row(s) older than %lld s", (long long)a->pruned_rows,
			 (long long)(a->o->flow_retention_ms / 1000));
}

static void send_flows_ack(struct agents *a, struct node_link *n, json_int_t epoch, json_int_t seq,
			   const char *rejected)
{
	json_t *body = json_pack("{s:I,s:I}", "epoch", epoch, "seq", seq);
	if (rejected)
		json_object_set_new(body, "rejected", json_string(rejected));
	send_to(a, n->rid, n->rid_len, PROTO_FLOWS_ACK, body);
}

/* What was not stored of a node's batch: logged once a minute a reason. */
static void log_drops(struct agents *a, struct node_link *n, const struct store_drops *d)
{
	static const char *const why[STORE_DROP_COUNT] = {
		[STORE_DROP_RATE] = "over the node's rate limit (--flow-rate)",
		[STORE_DROP_QUOTA] = "over the node's quota (--flow-quota)",
		[STORE_DROP_REJECTED] = "rejected",
		[STORE_DROP_EXPIRED] = "older than the retention (is the node's clock behind?)",
		[STORE_DROP_FUTURE] = "dated in the future, stored with the controller's time (is the node's clock "
				      "ahead?)",
		[STORE_DROP_FOREIGN] = "naming endpoints the node did not report",
	};
	int64_t now = clock_mono_ms();
	for (int r = 0; r < STORE_DROP_COUNT; r++) {
		if (!d->v[r].batches || r == STORE_DROP_REJECTED)
			continue;
		if (r != STORE_DROP_FUTURE)
			a->count.flow_records_dropped += (uint64_t)d->v[r].records;
		if (r == STORE_DROP_EXPIRED)
			a->count.flow_batches_expired++;
		if (n->drop_logged_ms[r] && now - n->drop_logged_ms[r] < FLOW_DROP_LOG_MS)
			continue;
		n->drop_logged_ms[r] = now;
		log_warn("node %s: %lld flow record(s) (%lld packets) %s%s; shown by `bulkhead flows` (logged once a "
			 "minute)",
			 n->node, (long long)d->v[r].records, (long long)d->v[r].packets, why[r],
			 r == STORE_DROP_FUTURE ? "" : ", not stored");
	}
}

/* The records n's rate allows now, its batch's key taken first (a batch
 * key is a row too): < 0 when there is no room even for that. */
static int64_t flow_room(struct agents *a, struct node_link *n)
{
	if (!a->o->flow_rate)
		return INT64_MAX;
	return flowcheck_bucket_fill(&n->flow_bucket, clock_mono_ms(), a->o->flow_rate,
				     a->o->flow_rate * AGENTS_FLOW_BURST_S) -
	       1;
}

/* A batch of denied flows: held to its node and the limits (flowcheck.h),
 * named, stored once, then acknowledged. A batch that cannot be stored is
 * not acknowledged: the agent sends it again. */
static void on_flows(struct agents *a, struct node_link *n, json_t *body)
{
	json_int_t epoch = json_integer_value(json_object_get(body, "epoch")),
		   seq = json_integer_value(json_object_get(body, "seq"));
	int64_t used = 0;
	int r = store_flow_batch_seen(a->store, n->node, epoch, seq);
	if (r == 0)
		r = store_flow_records(a->store, n->node, &used);
	if (r < 0)
		goto fail;
	if (r == 1) { /* resent: acknowledged again, nothing counted twice */
		a->count.flow_batches_again++;
		send_flows_ack(a, n, epoch, seq, NULL);
		return;
	}
	int64_t now = clock_wall_ms(), room = flow_room(a, n);
	struct store_drops drops = {0};
	if (room < 0) { /* not even for its key: counted, nothing stored */
		flowcheck_drop_all(body, STORE_DROP_RATE, &drops);
		if (store_add_flow_drops(a->store, n->node, &drops, now) < 0)
			goto fail;
		log_drops(a, n, &drops);
		send_flows_ack(a, n, epoch, seq, NULL);
		return;
	}
	/* The names it reported: its endpoints, no other node's. */
	json_t *names = json_object();
	size_t i;
	json_t *e;
	json_array_foreach(compiler_endpoints(a->compiler, n->node), i, e)
		json_object_set_new(names, json_string_value(json_object_get(e, "name")), json_true());
	struct flowcheck_limits l = {
		.now_ms = now,
		.keep_after_ms = flows_keep_after(a),
		.future_ms = FLOW_FUTURE_MS,
		.rate_records = room,
		.quota_records = a->o->flow_quota ? a->o->flow_quota - used : INT64_MAX,
	};
	int64_t kept = flowcheck_batch(body, names, &l, &drops);
	json_decref(names);
	flownames_add(a->compiler, n->node, body);
	r = store_add_flow_batch(a->store, n->node, body, &drops, now);
	if (r < 0)
		goto fail;
	if (r == 1) {
		a->count.flow_batches++;
		flowcheck_bucket_take(&n->flow_bucket, kept + 1);
		log_drops(a, n, &drops);
	} else {
		a->count.flow_batches_again++;
	}
	send_flows_ack(a, n, epoch, seq, NULL);
	return;
fail:
	a->count.flow_store_failed++;
	log_error("node %s: storing flow batch %lld: %s", n->node, (long long)seq, store_error(a->store));
}

/* A FLOWS body that did not decode (why): answered with a rejection when
 * its batch can be named, so that the agent stops sending it, and counted
 * for `bulkhead flows`. */
static void on_flows_malformed(struct agents *a, struct node_link *n, const void *body, size_t len, const char *why)
{
	int64_t epoch, seq;
	if (proto_flows_key(body, len, &epoch, &seq) < 0)
		return;
	a->count.flow_batches_rejected++;
	struct store_drops drops = {0};
	drops.v[STORE_DROP_REJECTED].batches = 1;
	int64_t now = clock_wall_ms();
	json_t *key = json_pack("{s:I,s:I,s:I,s:I,s:[],s:[]}", "epoch", (json_int_t)epoch, "seq", (json_int_t)seq,
				"start", (json_int_t)now, "end", (json_int_t)now, "flows", "lost");
	/* Stored as a batch without records, so that a resent copy counts
	 * once; past the rate, not even that. */
	bool keyed = flow_room(a, n) >= 0;
	int r = keyed ? store_add_flow_batch(a->store, n->node, key, &drops, now)
		      : store_add_flow_drops(a->store, n->node, &drops, now);
	if (r < 0)
		log_error("node %s: recording rejected flow batch %lld: %s", n->node, (long long)seq,
			  store_error(a->store));
	else if (keyed)
		flowcheck_bucket_take(&n->flow_bucket, 1);
	json_decref(key);
	int64_t *logged = &n->drop_logged_ms[STORE_DROP_REJECTED], mono = clock_mono_ms();
	if (!*logged || mono - *logged >= FLOW_DROP_LOG_MS) {
		*logged = mono;
		log_warn("node %s: flow batch %lld/%lld rejected: %s (logged once a minute; `bulkhead flows` counts "
			 "them)",
			 n->node, (long long)epoch, (long long)seq, why);
	}
	send_flows_ack(a, n, epoch, seq, why);
}

void agents_handle(struct agents *a, const void *rid_data, size_t rid_len, const char *user_id, const void *type,
		   size_t type_len, const void *body, size_t body_len)
{
	const uint8_t *rid = rid_data;
	if (rid_len > ROUTING_ID_MAX)
		return;
	struct proto_msg m;
	char err[256];
	if (a->o->insecure)
		user_id = NULL;
	/* What only the controller sends is not even parsed (a BUNDLE may be
	 * larger than anything an agent sends). */
	int t = proto_type_parse(type, type_len);
	if (t >= 0 && !proto_sent_by_agent(t))
		snprintf(err, sizeof(err), "%s: not a message agents send", proto_type_name(t));
	if ((t >= 0 && !proto_sent_by_agent(t)) ||
	    proto_decode(type, type_len, body, body_len, &m, err, sizeof(err)) < 0) {
		a->count.malformed++;
		struct node_link *n = node_by_rid(a, rid, rid_len);
		/* A batch the agent would send again and again: answered, when
		 * it comes on its node's session from its node's key. */
		if (n && t == PROTO_FLOWS && (a->o->insecure || (user_id && strcmp(user_id, n->node) == 0))) {
			n->last_heard_ms = clock_mono_ms();
			on_flows_malformed(a, n, body, body_len, err);
			return;
		}
		log_warn("dropped a malformed message from %s: %s", n ? n->node : "an unknown agent", ESCAPED(err));
		return;
	}
	if (m.type == PROTO_HELLO) {
		on_hello(a, rid, rid_len, user_id, m.body);
		proto_msg_release(&m);
		return;
	}
	struct node_link *n = node_by_rid(a, rid, rid_len);
	if (!n) {
		/* We restarted, or marked it down: it must say who it is. */
		a->count.resync++;
		send_to(a, rid, rid_len, PROTO_RESYNC, json_pack("{s:s}", "reason", "unknown session; say HELLO"));
		proto_msg_release(&m);
		return;
	}
	/* The routing id named the session at HELLO; the key that sends each
	 * message must still be that node's (a connection that took over a
	 * stale routing id must not speak for the node it belonged to). */
	if (!a->o->insecure && (!user_id || strcmp(user_id, n->node) != 0)) {
		a->count.refused++;
		log_warn("dropped a %s on node %s's session from the key of %s", proto_type_name(m.type), n->node,
			 user_id ? user_id : "nobody");
		proto_msg_release(&m);
		return;
	}
	node_heard(a, n);
	switch (m.type) {
	case PROTO_ACK:
		on_ack(a, n, m.body);
		break;
	case PROTO_ENDPOINTS:
		take_endpoints(a, n, json_object_get(m.body, "endpoints"));
		break;
	case PROTO_HEARTBEAT:
		break;
	case PROTO_FLOWS:
		on_flows(a, n, m.body);
		break;
	default:
		a->count.unexpected++;
		log_warn("node %s: dropped an unexpected %s", n->node, proto_type_name(m.type));
		break;
	}
	proto_msg_release(&m);
}

static void handle_message(struct agents *a, zmq_msg_t *parts, int n_parts)
{
	if (n_parts != 3) {
		a->count.malformed++;
		log_warn("dropped a message of %d frame(s) (want 3: routing id, type, body)", n_parts);
		return;
	}
	agents_handle(a, zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]),
		      a->o->insecure ? NULL : zmq_msg_gets(&parts[2], "User-Id"), zmq_msg_data(&parts[1]),
		      zmq_msg_size(&parts[1]), zmq_msg_data(&parts[2]), zmq_msg_size(&parts[2]));
}

/* Reads one whole message; false when none is waiting. */
static bool recv_one(struct agents *a)
{
	zmq_msg_t parts[4];
	int n = 0, more = 1;
	bool got = false;
	while (more) {
		zmq_msg_t m;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, a->router, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&m);
			break;
		}
		got = true;
		more = zmq_msg_more(&m);
		if (n < 4)
			parts[n++] = m;
		else
			zmq_msg_close(&m), n++;
	}
	if (got)
		handle_message(a, parts, n);
	for (int i = 0; i < n && i < 4; i++)
		zmq_msg_close(&parts[i]);
	return got;
}

void agents_dispatch(struct agents *a)
{
	if (a->zap) {
		int events = 0;
		size_t sz = sizeof(events);
		while (zmq_getsockopt(a->zap, ZMQ_EVENTS, &events, &sz) == 0 && (events & ZMQ_POLLIN))
			zap_handle(a);
	}
	/* Bounded in count and time: other sockets and the heartbeats get
	 * their turn even while a peer sends large messages. */
	int64_t start = clock_mono_ms();
	for (int i = 0; i < 1000 && clock_mono_ms() - start < DISPATCH_BUDGET_MS && recv_one(a); i++)
		;
}

void agents_tick(struct agents *a, int64_t now)
{
	/* The loop comes here at least every heartbeat_ms / 4 (its poll
	 * timeout); longer is time it was held up. */
	int64_t period = a->o->heartbeat_ms / 4;
	if (a->last_tick_ms && now - a->last_tick_ms > period)
		a->stalled_ms += now - a->last_tick_ms - period;
	a->last_tick_ms = now;
	flows_prune(a, now);
	if (now - a->last_heartbeat_ms < (int64_t)a->o->heartbeat_ms)
		return;
	a->last_heartbeat_ms = now;
	if (!a->o->insecure) /* label rules changed with no handshake to notice */
		allow_reload(a, ALLOW_REREAD_IDLE_MS);
	for (struct node_link *n = a->nodes; n; n = n->next) {
		if (!n->connected)
			continue;
		if (node_silent(a, n, now)) {
			n->connected = false;
			node_clear_inflight(n);
			log_warn("node %s: silent for %d heartbeats; marked down", n->node, PROTO_DEAD_HEARTBEATS);
			continue;
		}
		send_node(a, n, PROTO_HEARTBEAT, json_object());
		if (n->inflight_revision && now - n->inflight_since_ms >= INFLIGHT_TIMEOUT_MS) {
			log_warn("node %s: no ACK for %.12s in %d s; sending it again", n->node, n->inflight_hash,
				 INFLIGHT_TIMEOUT_MS / 1000);
			push_node(a, n);
		}
	}
}

/* ---- status ---- */

json_t *agents_status_nodes(struct agents *a)
{
	json_t *out = json_array();
	int64_t mono = clock_mono_ms(), wall = clock_wall_ms();
	int64_t rev = compiler_revision(a->compiler);
	/* Every node that reported endpoints, connected or not. */
	for (const char *const *name = compiler_nodes(a->compiler); *name; name++)
		node_get(a, *name);
	for (struct node_link *n = a->nodes; n; n = n->next) {
		const char *want_hash = NULL;
		compiler_bundle(a->compiler, n->node, &want_hash);
		json_t *eps = compiler_endpoints(a->compiler, n->node);
		/* Without a policy there is nothing to be in sync with: a node
		 * is up to date when it holds nothing either (one that enforces
		 * an older controller's bundle is not). */
		bool up_to_date = want_hash ? (n->held_revision == rev && strcmp(n->held_hash, want_hash) == 0 && n->ack_ok)
					    : rev == 0 && !n->held_revision && !n->held_hash[0];
		json_t *errors = json_copy(n->errors);
		if (n->list_error) {
			json_array_append_new(errors, json_string(n->list_error));
			up_to_date = false;
		}
		json_array_append_new(
		    out,
		    json_pack("{s:s,s:b,s:o,s:s?,s:o,s:s?,s:s?,s:b,s:I,s:o}", "node", n->node, "connected",
			      n->connected, "last_heartbeat",
			      n->last_heard_ms ? json_integer(wall - (mono - n->last_heard_ms)) : json_null(),
			      "agent_version", n->agent_version, "applied_revision",
			      n->held_revision ? json_integer(n->held_revision) : json_null(), "applied_hash",
			      n->held_hash[0] ? n->held_hash : NULL, "desired_hash", want_hash, "up_to_date",
			      up_to_date, "endpoints", (json_int_t)json_array_size(eps), "errors", errors));
	}
	return out;
}

json_t *agents_counters(struct agents *a)
{
	json_t *c = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "messages_malformed",
			 (json_int_t)a->count.malformed, "messages_unexpected", (json_int_t)a->count.unexpected,
			 "agents_refused", (json_int_t)a->count.refused, "resyncs_asked", (json_int_t)a->count.resync,
			 "sends_failed", (json_int_t)a->count.send_failed, "flow_batches_stored",
			 (json_int_t)a->count.flow_batches, "flow_batches_resent", (json_int_t)a->count.flow_batches_again,
			 "flow_batches_not_stored", (json_int_t)a->count.flow_store_failed, "flow_batches_expired",
			 (json_int_t)a->count.flow_batches_expired, "flow_batches_rejected",
			 (json_int_t)a->count.flow_batches_rejected, "flow_records_dropped",
			 (json_int_t)a->count.flow_records_dropped, "endpoint_lists_rejected",
			 (json_int_t)a->count.endpoints_rejected, "bundles_sent", (json_int_t)a->count.bundles,
			 "deltas_sent", (json_int_t)a->count.deltas, "acks", (json_int_t)a->count.acks);
	json_object_update_new(c, json_pack("{s:I,s:I,s:I}", "nodes_refused", (json_int_t)a->count.nodes_refused,
					    "ack_results_ignored", (json_int_t)a->count.ack_results_ignored,
					    "agent_errors_cut", (json_int_t)a->count.errors_cut));
	return c;
}

/* ---- life cycle ---- */

/* "DOING WHERE: zmq's error", malloc()ed. */
static char *zmq_failure(const char *doing, const char *where)
{
	char *s;
	if (asprintf(&s, "%s %s: %s", doing, where, zmq_strerror(errno)) < 0)
		abort();
	return s;
}

struct agents *agents_new(void *zctx, const struct agents_options *o, struct compiler *c, struct store *s,
			  char **err)
{
	struct agents *a = xcalloc(1, sizeof(*a));
	a->o = o;
	a->compiler = c;
	a->store = s;
	*err = NULL;
	/* The nodes the store remembers are known from the start. */
	for (const char *const *name = compiler_nodes(c); *name; name++)
		node_get(a, *name);
	if (o->insecure && o->max_nodes && a->n_nodes > o->max_nodes)
		log_warn("%zu nodes are known, more than --max-nodes %u: a new node is refused until `bulkhead nodes "
			 "forget` drops some",
			 a->n_nodes, o->max_nodes);
	if (!o->insecure) {
		/* The ZAP handler must be bound before any CURVE socket. */
		a->zap = zmq_socket(zctx, ZMQ_REP);
		if (!a->zap || zmq_bind(a->zap, ZAP_ENDPOINT) < 0) {
			*err = zmq_failure("ZAP handler", ZAP_ENDPOINT);
			goto err_free;
		}
		allow_reload(a, 0);
	}
	a->router = zmq_socket(zctx, ZMQ_ROUTER);
	/* Memory per connection: PROTO_RCVHWM messages queued and one more
	 * decoded, each at most what an agent sends (plus CURVE's framing);
	 * past that libzmq stops reading the connection. */
	int one = 1, zero = 0, hwm = PROTO_RCVHWM, handshake_ms = HANDSHAKE_MS;
	int64_t max = PROTO_MAX_AGENT_MSG + 4096;
	if (!a->router || zmq_setsockopt(a->router, ZMQ_MAXMSGSIZE, &max, sizeof(max)) < 0 ||
	    zmq_setsockopt(a->router, ZMQ_RCVHWM, &hwm, sizeof(hwm)) < 0 ||
	    zmq_setsockopt(a->router, ZMQ_HANDSHAKE_IVL, &handshake_ms, sizeof(handshake_ms)) < 0 ||
	    zmq_setsockopt(a->router, ZMQ_ROUTER_MANDATORY, &one, sizeof(one)) < 0 ||
	    zmq_setsockopt(a->router, ZMQ_LINGER, &zero, sizeof(zero)) < 0) {
		*err = zmq_failure("agents' socket", o->listen);
		goto err_free;
	}
	if (!o->insecure &&
	    (zmq_setsockopt(a->router, ZMQ_CURVE_SERVER, &one, sizeof(one)) < 0 ||
	     zmq_setsockopt(a->router, ZMQ_CURVE_SECRETKEY, o->secret_key, KEY_Z85_LEN) < 0 ||
	     zmq_setsockopt(a->router, ZMQ_ZAP_DOMAIN, "bulkhead", 8) < 0)) {
		*err = zmq_failure("CURVE on", o->listen);
		goto err_free;
	}
	if (zmq_bind(a->router, o->listen) < 0) {
		*err = zmq_failure("listening on", o->listen);
		goto err_free;
	}
	return a;

err_free:
	agents_free(a);
	return NULL;
}

void agents_free(struct agents *a)
{
	if (!a)
		return;
	while (a->nodes) {
		struct node_link *n = a->nodes;
		a->nodes = n->next;
		node_free(n);
	}
	allow_clear(a);
	free(a->allow_said);
	if (a->router)
		zmq_close(a->router);
	if (a->zap) {
		/* libzmq releases an inproc name when it reaps the socket, later:
		 * unbound now, the next agents_new() in this context (the fuzzer
		 * makes one per input) can bind it at once. */
		zmq_unbind(a->zap, ZAP_ENDPOINT);
		zmq_close(a->zap);
	}
	free(a);
}

int agents_poll_items(struct agents *a, zmq_pollitem_t *items)
{
	int n = 0;
	items[n++] = (zmq_pollitem_t){.socket = a->router, .events = ZMQ_POLLIN};
	if (a->zap)
		items[n++] = (zmq_pollitem_t){.socket = a->zap, .events = ZMQ_POLLIN};
	return n;
}
