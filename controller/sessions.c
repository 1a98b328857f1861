/* The agents' sessions (see sessions.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "bulkhead/escape.h"
#include "bulkhead/inventory.h"
#include "bulkhead/keys.h"
#include "bulkhead/log.h"
#include "bulkhead/proto.h"
#include "bulkhead/ratelimit.h"
#include "bulkhead/zmsg.h"
#include "auth.h"
#include "intake.h"
#include "push.h"
#include "sessions.h"

/* A connection that has not finished its handshake by then is closed:
 * until it has, it may hold a message of up to PROTO_MAX_AGENT_MSG. */
#define HANDSHAKE_MS 10000
/* Messages one call of the ROUTER's handler reads, and how long it may
 * read (a message of 32 MiB takes a while to parse); the loop calls again
 * while more wait, after the other sources had their turn. */
#define READ_BURST     64
#define READ_BUDGET_MS 50
/* How long one round of compiling may hold the loop before it yields. */
#define COMPILE_BUDGET_MS 20
/* What peers that are no node (yet) make the controller log: 10 lines
 * every 10 s. */
#define PEER_LOG_MS    10000
#define PEER_LOG_BURST 10

struct sessions {
	const struct sessions_options *o;
	struct loop *loop;
	struct nodes *nodes;
	struct compiler *compiler;
	struct store *store;
	struct auth *auth;
	struct intake *intake;
	void *router, *monitor;
	char monitor_endpoint[64];
	struct loop_source *router_src, *monitor_src, *timer_src;
	int64_t last_heartbeat_ms;
	/* How far the ROUTER's input has been read: everything that waited
	 * at drained_ms has been read. Established when the socket is found
	 * empty, or when enough messages were read since a moment (horizon)
	 * that each connection's queue then was read whole: libzmq serves
	 * connections in turn and queues at most PROTO_RCVHWM (+1 being
	 * decoded) each. */
	int64_t drained_ms;
	bool horizon_open;
	int64_t horizon_ms;
	uint64_t horizon_reads, horizon_need;
	uint64_t reads;
	int64_t connections;	      /* from the socket's monitor */
	struct ratelimit log;	      /* malformed messages of peers that are no node */
	struct ratelimit refused_log; /* refused HELLOs */
	struct {
		uint64_t malformed, unexpected, refused, resync, send_failed, endpoints_rejected, bundles,
		    deltas, acks, nodes_refused, ack_results_ignored, errors_cut;
	} count;
};

/* ---- how far the input has been read ---- */

static void drained_at(struct sessions *s, int64_t t)
{
	if (t > s->drained_ms)
		s->drained_ms = t;
	s->horizon_open = false;
}

static void horizon_open(struct sessions *s, int64_t now)
{
	size_t connected = 0;
	for (size_t i = 0; i < nodes_count(s->nodes); i++)
		connected += nodes_at(s->nodes, i)->connected;
	/* Both counts bound the connections; taking both covers a monitor
	 * event lost or late. */
	uint64_t conns = (uint64_t)(s->connections > 0 ? s->connections : 0) + connected + 1;
	s->horizon_open = true;
	s->horizon_ms = now;
	s->horizon_reads = s->reads;
	s->horizon_need = conns * (PROTO_RCVHWM + 2);
}

static void counted_read(struct sessions *s)
{
	s->reads++;
	if (s->horizon_open && s->reads - s->horizon_reads >= s->horizon_need)
		drained_at(s, s->horizon_ms);
}

static bool router_input_waits(struct sessions *s)
{
	int events = 0;
	size_t len = sizeof(events);
	return zmq_getsockopt(s->router, ZMQ_EVENTS, &events, &len) == 0 && (events & ZMQ_POLLIN);
}

/* Whether n has been silent too long: judged against what has been read,
 * not against the clock. */
static bool node_silent(const struct sessions *s, const struct node *n)
{
	return s->drained_ms - n->last_heard_ms > (int64_t)s->o->heartbeat_ms * PROTO_DEAD_HEARTBEATS;
}

/* ---- sending ---- */

/* Takes the reference to body. */
static bool send_to(struct sessions *s, const uint8_t *rid, size_t rid_len, enum proto_type t, json_t *body)
{
	size_t len;
	char *text = proto_encode(body, &len);
	if (!text)
		abort();
	const char *type = proto_type_name(t);
	bool ok = zmq_send(s->router, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
		  zmq_send(s->router, type, strlen(type), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
		  zmq_send(s->router, text, len, ZMQ_DONTWAIT) >= 0;
	free(text);
	if (!ok)
		s->count.send_failed++;
	return ok;
}

static bool send_node(struct sessions *s, struct node *n, enum proto_type t, json_t *body)
{
	bool ok = send_to(s, n->rid, n->rid_len, t, body);
	if (!ok)
		ratelimit_log(&n->log, LOG_LEVEL_WARN, "node %s: sending %s: %s", n->name, proto_type_name(t),
			      zmq_strerror(errno));
	return ok;
}

/* Sends n what it lacks of the bundle it must enforce, if anything. */
static void push_node(struct sessions *s, struct node *n)
{
	const char *hash;
	/* Inputs changed: compile_some() pushes once they are compiled, and
	 * the work of finding what is stale is done once for a round of
	 * messages, not once a message. */
	if (!n->connected || compiler_changed(s->compiler))
		return;
	json_t *want = compiler_bundle(s->compiler, n->name, &hash), *body;
	if (!want)
		return;
	int64_t rev = compiler_revision(s->compiler), now = clock_mono_ms();
	size_t n_sets;
	int t = push_next(n, want, hash, rev, now, &body, &n_sets);
	if (t < 0)
		return;
	if (t == PROTO_DELTA) {
		s->count.deltas++;
		ratelimit_log(&n->log, LOG_LEVEL_INFO,
			      "node %s: delta %.12s → %.12s (revision %lld, %zu set(s))", n->name,
			      n->held_hash, hash, (long long)rev, n_sets);
	} else {
		s->count.bundles++;
		ratelimit_log(&n->log, LOG_LEVEL_INFO, "node %s: bundle %.12s (revision %lld)", n->name, hash,
			      (long long)rev);
	}
	push_sent(n, send_node(s, n, t, body), want, hash, rev, now);
}

void sessions_push_all(struct sessions *s)
{
	for (size_t i = 0; i < nodes_count(s->nodes); i++)
		push_node(s, nodes_at(s->nodes, i));
}

/* ---- compiling, as the inputs change ---- */

static void on_compiled(void *data, struct node *n)
{
	push_node(data, n);
}

/* A round of compiling; the rest in the next round, after the other
 * sources (heartbeats first) had their turn. Each node is sent its bundle
 * as soon as it is compiled; at the end every node is looked at, for the
 * pushes left while changes were pending (push_node). */
static void compile_some(void *data, uint32_t events)
{
	struct sessions *s = data;
	if (compiler_compile(s->compiler, COMPILE_BUDGET_MS, on_compiled, s) > 0)
		loop_defer(s->loop, compile_some, s);
	else
		sessions_push_all(s);
}

static void inputs_changed(void *data)
{
	struct sessions *s = data;
	loop_defer(s->loop, compile_some, s);
}

/* ---- endpoint lists ---- */

/* Why n's endpoint list is not what it reported (NULL: it is): the first
 * problem in d, for status. */
static void set_list_error(struct node *n, const char *what, const struct diag *d)
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

static void take_endpoints(struct sessions *s, struct node *n, json_t *endpoints)
{
	struct diag d;
	diag_init(&d, n->name);
	/* A label the node may not claim refuses the whole list, as a
	 * malformed one: leaving the label out instead could take an
	 * endpoint out of a deny group (fail closed). */
	int r = auth_check_labels(s->auth, n->name, endpoints, &d);
	if (r == 0)
		r = compiler_set_endpoints(s->compiler, n->name, endpoints, &d);
	json_decref(n->refused_list);
	n->refused_list = NULL;
	if (r < 0) {
		s->count.endpoints_rejected++;
		uint64_t missed;
		if (ratelimit_pass(&n->log, clock_mono_ms(), &missed)) {
			if (missed)
				log_info("node %s: %llu line(s) about the node not logged before this one",
					 n->name, (unsigned long long)missed);
			log_error("node %s: endpoint list rejected; keeping the previous one:", n->name);
			diag_print(&d, stderr);
		}
		set_list_error(n, "endpoint list refused, the previous one kept", &d);
		n->refused_list = json_incref(endpoints);
	} else {
		set_list_error(n, NULL, NULL);
	}
	if (r > 0) {
		char *text = json_dumps(endpoints, JSON_COMPACT);
		if (!text || store_put_inventory(s->store, n->name, text) < 0)
			log_error("node %s: storing its endpoints: %s", n->name, store_error(s->store));
		free(text);
		ratelimit_log(&n->log, LOG_LEVEL_INFO, "node %s: %zu endpoint(s)", n->name,
			      json_array_size(endpoints));
	}
	diag_release(&d);
}

/* n's label rules changed: a list refused before is tried again (they may
 * admit it now), and the list in force is checked against them. One that
 * breaks them stays in force, since dropping it could take endpoints out
 * of deny groups; status says so until the node reports one that keeps
 * to them. */
static void rules_changed(void *data, struct node *n)
{
	struct sessions *s = data;
	if (n->refused_list) {
		json_t *list = json_incref(n->refused_list);
		take_endpoints(s, n, list);
		json_decref(list);
		return;
	}
	if (!n->endpoints)
		return;
	struct diag d;
	diag_init(&d, n->name);
	if (auth_check_labels(s->auth, n->name, n->endpoints, &d) < 0) {
		log_error("node %s: its endpoint list in force breaks its label rules; kept until the node "
			  "reports one "
			  "that keeps to them:",
			  n->name);
		diag_print(&d, stderr);
		set_list_error(n, "the endpoint list in force breaks the node's label rules (kept)", &d);
	} else {
		set_list_error(n, NULL, NULL);
	}
	diag_release(&d);
}

/* ---- receiving ---- */

/* The session on routing id rid, or NULL. */
static struct node *node_by_rid(struct sessions *s, const void *rid, size_t len)
{
	for (size_t i = 0; i < nodes_count(s->nodes); i++) {
		struct node *n = nodes_at(s->nodes, i);
		if (n->connected && n->rid_len == len && memcmp(n->rid, rid, len) == 0)
			return n;
	}
	return NULL;
}

static void node_down(struct node *n)
{
	n->connected = false;
	push_lost(n);
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

static void refuse_hello(struct sessions *s, const uint8_t *rid, size_t rid_len, const char *reason)
{
	s->count.refused++;
	send_to(s, rid, rid_len, PROTO_REFUSED, json_pack("{s:s}", "reason", reason));
}

/* Whether a HELLO may make node known: with --insecure anyone may say
 * HELLO under any name, so their number is bounded (the allow-list bounds
 * it with CURVE). */
static bool node_room(struct sessions *s, const char *node)
{
	if (!s->o->insecure || !s->o->max_nodes || nodes_count(s->nodes) < s->o->max_nodes ||
	    nodes_find(s->nodes, node))
		return true;
	s->count.nodes_refused++;
	ratelimit_log(&s->refused_log, LOG_LEVEL_WARN,
		      "refused HELLO for a new node \"%s\": %zu nodes are known, the most --max-nodes allows "
		      "(`bulkhead nodes forget NODE` drops one)",
		      ESCAPED(node), nodes_count(s->nodes));
	return false;
}

static void on_hello(struct sessions *s, const uint8_t *rid, size_t rid_len, const char *user_id,
		     json_t *body)
{
	const char *node = json_string_value(json_object_get(body, "node"));
	const char *version = json_string_value(json_object_get(body, "agent"));
	char reason[512];
	if (!inventory_node_name_valid(node)) {
		ratelimit_log(&s->refused_log, LOG_LEVEL_WARN,
			      "refused HELLO for node \"%s\": not a node name", ESCAPED(node));
		snprintf(reason, sizeof(reason), "invalid node name: %s", INVENTORY_NODE_NAME_RULE);
		refuse_hello(s, rid, rid_len, reason);
		return;
	}
	if (!s->o->insecure && (!user_id || strcmp(user_id, node) != 0)) {
		ratelimit_log(&s->refused_log, LOG_LEVEL_WARN,
			      "refused HELLO for node \"%s\" from the key of node \"%s\"", node,
			      user_id ? ESCAPED(user_id) : "?");
		snprintf(reason, sizeof(reason), "this key belongs to node \"%s\", not \"%s\"",
			 user_id ? user_id : "?", node);
		refuse_hello(s, rid, rid_len, reason);
		return;
	}
	if (!agent_version_valid(version)) {
		ratelimit_log(
		    &s->refused_log, LOG_LEVEL_WARN,
		    "refused HELLO for node %s: agent version \"%s\" is not 1-%d printable characters", node,
		    ESCAPED(version), PROTO_VERSION_MAX);
		snprintf(reason, sizeof(reason),
			 "\"agent\" must be a version of 1-%d printable ASCII characters", PROTO_VERSION_MAX);
		refuse_hello(s, rid, rid_len, reason);
		return;
	}
	if (!node_room(s, node)) {
		snprintf(reason, sizeof(reason),
			 "the controller knows as many nodes as --max-nodes allows (%u)", s->o->max_nodes);
		refuse_hello(s, rid, rid_len, reason);
		return;
	}
	/* A routing id names one connection, and a connection speaks for one
	 * node: one that held this id before (its agent gone, the id taken
	 * over; or under another name with --insecure) has lost its session,
	 * and gets nothing more on it. */
	for (size_t i = 0; i < nodes_count(s->nodes); i++) {
		struct node *o = nodes_at(s->nodes, i);
		if (!o->connected || strcmp(o->name, node) == 0 || o->rid_len != rid_len ||
		    memcmp(o->rid, rid, rid_len) != 0)
			continue;
		node_down(o);
		ratelimit_log(&o->log, LOG_LEVEL_WARN,
			      "node %s: its connection now says HELLO as node %s; marked down", o->name,
			      node);
	}
	struct node *n = nodes_add(s->nodes, node);
	if (n->connected && (n->rid_len != rid_len || memcmp(n->rid, rid, rid_len) != 0))
		ratelimit_log(&n->log, LOG_LEVEL_INFO,
			      "node %s: a new connection replaces the old one (agent restarted?)", node);
	memcpy(n->rid, rid, rid_len);
	n->rid_len = rid_len;
	n->connected = true;
	n->last_heard_ms = clock_mono_ms();
	free(n->agent_version);
	n->agent_version = xstrdup(version);
	/* What it holds; the bundle last compiled for it is the base of a
	 * delta when that is what it holds (also before its new list is
	 * compiled). */
	push_hello(n, json_object_get(body, "revision"), json_object_get(body, "hash"), n->bundle, n->hash);
	json_array_clear(n->errors);
	n->ack_ok = true;
	ratelimit_log(&n->log, LOG_LEVEL_INFO, "node %s: HELLO from agent %s holding revision %lld (%.12s)",
		      node, n->agent_version, (long long)n->held_revision,
		      n->held_hash[0] ? n->held_hash : "nothing");
	take_endpoints(s, n, json_object_get(body, "endpoints"));
	push_node(s, n);
}

/* An error string from an agent as status shows it: cut at PROTO_ERROR_MAX
 * bytes (at a character's start; escaping is the printer's). */
static json_t *agent_error(struct sessions *s, const char *prefix, const char *error)
{
	size_t len = strlen(error);
	if (len <= PROTO_ERROR_MAX)
		return json_sprintf("%s%s", prefix, error);
	s->count.errors_cut++;
	while (len > PROTO_ERROR_MAX || (len > 0 && ((unsigned char)error[len] & 0xc0) == 0x80))
		len--;
	return json_sprintf("%s%.*s... (cut at %d bytes)", prefix, (int)len, error, PROTO_ERROR_MAX);
}

static void on_ack(struct sessions *s, struct node *n, json_t *body)
{
	s->count.acks++;
	push_acked(n, json_object_get(body, "revision"), json_object_get(body, "hash"));
	n->ack_ok = json_is_true(json_object_get(body, "ok"));
	json_array_clear(n->errors);
	json_t *err = json_object_get(body, "error");
	if (json_is_string(err))
		json_array_append_new(n->errors, agent_error(s, "", json_string_value(err)));
	/* An endpoint's error is shown under its name: only for endpoints the
	 * node reported (one just removed from its list is gone anyway). */
	size_t i, ignored = 0;
	json_t *e, *names = json_object();
	json_array_foreach (n->endpoints, i, e)
		json_object_set(names, json_string_value(json_object_get(e, "name")), json_true());
	json_array_foreach (json_object_get(body, "endpoints"), i, e) {
		const char *name = json_string_value(json_object_get(e, "name"));
		json_t *ee = json_object_get(e, "error");
		if (!json_is_string(ee))
			continue;
		if (!name || !json_object_get(names, name)) {
			ignored++;
			continue;
		}
		char prefix[NAME_MAX_LEN + 3];
		snprintf(prefix, sizeof(prefix), "%s: ", name);
		json_array_append_new(n->errors, agent_error(s, prefix, json_string_value(ee)));
	}
	json_decref(names);
	if (ignored) {
		s->count.ack_results_ignored += ignored;
		ratelimit_log(&n->log, LOG_LEVEL_WARN,
			      "node %s: ignored %zu result(s) in its ACK for endpoints it did not report",
			      n->name, ignored);
	}
	if (n->ack_ok)
		ratelimit_log(&n->log, LOG_LEVEL_INFO, "node %s: applied revision %lld (%.12s)", n->name,
			      (long long)n->held_revision, n->held_hash);
	else
		ratelimit_log(&n->log, LOG_LEVEL_WARN,
			      "node %s: revision %lld not applied everywhere (%zu error(s))", n->name,
			      (long long)n->held_revision, json_array_size(n->errors));
	push_node(s, n); /* a newer bundle may be waiting for this ACK */
}

static void on_flows(struct sessions *s, struct node *n, json_t *body)
{
	json_t *ack = intake_flows(s->intake, n, body);
	if (ack)
		send_node(s, n, PROTO_FLOWS_ACK, ack);
}

void sessions_handle(struct sessions *s, const void *rid_data, size_t rid_len, const char *user_id,
		     const void *type, size_t type_len, const void *body, size_t body_len)
{
	const uint8_t *rid = rid_data;
	if (rid_len > NODE_RID_MAX)
		return;
	struct proto_msg m;
	char err[256];
	if (s->o->insecure)
		user_id = NULL;
	/* What only the controller sends is not even parsed (a BUNDLE may be
	 * larger than anything an agent sends). */
	int t = proto_type_parse(type, type_len);
	if (t >= 0 && !proto_sent_by_agent(t))
		snprintf(err, sizeof(err), "%s: not a message agents send", proto_type_name(t));
	if ((t >= 0 && !proto_sent_by_agent(t)) ||
	    proto_decode(type, type_len, body, body_len, &m, err, sizeof(err)) < 0) {
		s->count.malformed++;
		struct node *n = node_by_rid(s, rid, rid_len);
		/* A batch the agent would send again and again: answered, when
		 * it comes on its node's session from its node's key. */
		if (n && t == PROTO_FLOWS && (s->o->insecure || (user_id && strcmp(user_id, n->name) == 0))) {
			n->last_heard_ms = clock_mono_ms();
			json_t *ack = intake_malformed(s->intake, n, body, body_len, err);
			if (ack)
				send_node(s, n, PROTO_FLOWS_ACK, ack);
			return;
		}
		ratelimit_log(n ? &n->log : &s->log, LOG_LEVEL_WARN,
			      "dropped a malformed message from %s: %s", n ? n->name : "an unknown agent",
			      ESCAPED(err));
		return;
	}
	if (m.type == PROTO_HELLO) {
		on_hello(s, rid, rid_len, user_id, m.body);
		proto_msg_release(&m);
		return;
	}
	struct node *n = node_by_rid(s, rid, rid_len);
	if (!n) {
		/* We restarted, or marked it down: it must say who it is. */
		s->count.resync++;
		send_to(s, rid, rid_len, PROTO_RESYNC,
			json_pack("{s:s}", "reason", "unknown session; say HELLO"));
		proto_msg_release(&m);
		return;
	}
	/* The routing id named the session at HELLO; the key that sends each
	 * message must still be that node's (a connection that took over a
	 * stale routing id must not speak for the node it belonged to). */
	if (!s->o->insecure && (!user_id || strcmp(user_id, n->name) != 0)) {
		s->count.refused++;
		ratelimit_log(&n->log, LOG_LEVEL_WARN, "dropped a %s on node %s's session from the key of %s",
			      proto_type_name(m.type), n->name, user_id ? ESCAPED(user_id) : "nobody");
		proto_msg_release(&m);
		return;
	}
	n->last_heard_ms = clock_mono_ms();
	switch (m.type) {
	case PROTO_ACK:
		on_ack(s, n, m.body);
		break;
	case PROTO_ENDPOINTS:
		take_endpoints(s, n, json_object_get(m.body, "endpoints"));
		break;
	case PROTO_HEARTBEAT:
		break;
	case PROTO_FLOWS:
		on_flows(s, n, m.body);
		break;
	default:
		s->count.unexpected++;
		ratelimit_log(&n->log, LOG_LEVEL_WARN, "node %s: dropped an unexpected %s", n->name,
			      proto_type_name(m.type));
		break;
	}
	proto_msg_release(&m);
}

static void on_router(void *data, uint32_t events)
{
	struct sessions *s = data;
	struct zmsg m;
	int64_t start = clock_mono_ms();
	for (int i = 0; i < READ_BURST && clock_mono_ms() - start < READ_BUDGET_MS; i++) {
		int r = zmsg_recv(&m, s->router, 3);
		if (r <= 0) {
			if (r == 0)
				drained_at(s, clock_mono_ms());
			return;
		}
		counted_read(s);
		if (m.parts != 3) {
			s->count.malformed++;
			ratelimit_log(&s->log, LOG_LEVEL_WARN,
				      "dropped a message of %d frame(s) (want 3: routing id, type, body)",
				      m.parts);
		} else {
			sessions_handle(s, zmsg_data(&m, 0), zmsg_size(&m, 0),
					s->o->insecure ? NULL : zmq_msg_gets(&m.part[2], "User-Id"),
					zmsg_data(&m, 1), zmsg_size(&m, 1), zmsg_data(&m, 2),
					zmsg_size(&m, 2));
		}
		zmsg_release(&m);
	}
}

/* The socket's monitor: connections accepted and gone. */
static void on_monitor(void *data, uint32_t events)
{
	struct sessions *s = data;
	struct zmsg m;
	while (zmsg_recv(&m, s->monitor, 2) > 0) {
		if (m.kept >= 1 && zmsg_size(&m, 0) >= 2) {
			uint16_t event;
			memcpy(&event, zmsg_data(&m, 0), sizeof(event));
			if (event == ZMQ_EVENT_ACCEPTED)
				s->connections++;
			else if (event == ZMQ_EVENT_DISCONNECTED && s->connections > 0)
				s->connections--;
		}
		zmsg_release(&m);
	}
}

/* ---- heartbeats ---- */

void sessions_tick(struct sessions *s, int64_t now)
{
	intake_tick(s->intake, now);
	if (!router_input_waits(s))
		drained_at(s, now);
	else if (!s->horizon_open)
		horizon_open(s, now);
	if (now - s->last_heartbeat_ms < (int64_t)s->o->heartbeat_ms)
		return;
	s->last_heartbeat_ms = now;
	auth_reload(s->auth, AUTH_REREAD_IDLE_MS); /* label rules changed with no handshake to notice */
	for (size_t i = 0; i < nodes_count(s->nodes); i++) {
		struct node *n = nodes_at(s->nodes, i);
		if (!n->connected)
			continue;
		if (node_silent(s, n)) {
			node_down(n);
			ratelimit_log(&n->log, LOG_LEVEL_WARN,
				      "node %s: silent for %d heartbeats; marked down", n->name,
				      PROTO_DEAD_HEARTBEATS);
			continue;
		}
		send_node(s, n, PROTO_HEARTBEAT, json_object());
		if (push_overdue(n, now))
			ratelimit_log(&n->log, LOG_LEVEL_WARN,
				      "node %s: no ACK for %.12s in %d s; sending it again", n->name,
				      n->inflight_hash, PUSH_INFLIGHT_TIMEOUT_MS / 1000);
		/* What is overdue, and what could not be sent before. */
		push_node(s, n);
	}
}

static void on_timer(void *data, uint32_t events)
{
	sessions_tick(data, clock_mono_ms());
}

/* ---- forgetting ---- */

int sessions_forget(struct sessions *s, const char *node, bool force, bool *was_connected)
{
	struct node *n = nodes_find(s->nodes, node);
	if (!n)
		return -ENOENT;
	if (n->connected && !force)
		return -EBUSY;
	/* The store first: should it fail, the node is still whole. */
	if (store_forget_node(s->store, node) < 0) {
		log_error("forgetting node %s: %s", node, store_error(s->store));
		return -EIO;
	}
	*was_connected = n->connected;
	log_info("node %s forgotten%s; its endpoints leave every group", node,
		 n->connected ? " while connected (its agent is told to say HELLO again)" : "");
	compiler_forget_node(s->compiler, node);
	nodes_remove(s->nodes, n);
	return 0;
}

/* ---- status ---- */

bool sessions_known(struct sessions *s, const char *node)
{
	if (s->o->insecure)
		return nodes_find(s->nodes, node) != NULL;
	auth_reload(s->auth, AUTH_REREAD_IDLE_MS);
	return auth_listed(s->auth, node);
}

struct status_row {
	const char *name;
	json_t *row;
};

static int status_row_cmp(const void *a, const void *b)
{
	return strcmp(((const struct status_row *)a)->name, ((const struct status_row *)b)->name);
}

struct status_rows {
	struct sessions *s;
	struct status_row *v;
	size_t n, cap;
};

static void add_row(struct status_rows *u, const char *name, json_t *row)
{
	if (u->n == u->cap) {
		u->cap = u->cap ? 2 * u->cap : 16;
		u->v = xrealloc(u->v, u->cap * sizeof(*u->v));
	}
	u->v[u->n++] = (struct status_row){name, row};
}

/* An allow-listed node the table does not hold: known, never seen (or
 * forgotten) since the controller started, so down. */
static void add_unseen(void *data, const char *node)
{
	struct status_rows *u = data;
	if (nodes_find(u->s->nodes, node))
		return;
	add_row(u, node,
		json_pack("{s:s,s:b,s:b,s:n,s:n,s:n,s:n,s:n,s:b,s:I,s:[]}", "node", node, "known", true,
			  "connected", false, "last_heartbeat", "agent_version", "applied_revision",
			  "applied_hash", "desired_hash", "up_to_date", false, "endpoints", (json_int_t)0,
			  "errors"));
}

json_t *sessions_status_nodes(struct sessions *s)
{
	int64_t mono = clock_mono_ms(), wall = clock_wall_ms();
	int64_t rev = compiler_revision(s->compiler);
	/* A key added since the last handshake is a known node already. */
	auth_reload(s->auth, AUTH_REREAD_IDLE_MS);
	struct status_rows u = {.s = s};
	for (size_t i = 0; i < nodes_count(s->nodes); i++) {
		struct node *n = nodes_at(s->nodes, i);
		const char *want_hash = NULL;
		compiler_bundle(s->compiler, n->name, &want_hash);
		/* Without a policy there is nothing to be in sync with: a node
		 * is up to date when it holds nothing either (one that enforces
		 * an older controller's bundle is not). A node still being
		 * compiled is not up to date. */
		bool up_to_date =
		    want_hash ? (n->held_revision == rev && strcmp(n->held_hash, want_hash) == 0 && n->ack_ok)
			      : rev == 0 && !n->held_revision && !n->held_hash[0];
		json_t *errors = json_copy(n->errors);
		if (n->list_error) {
			json_array_append_new(errors, json_string(n->list_error));
			up_to_date = false;
		}
		/* Known (DESIGN §4): with --insecure, every node seen until
		 * forgotten; else the allow-list's (one whose key went is
		 * shown, and waited for only while connected). */
		json_t *row = json_pack(
		    "{s:s,s:b,s:b,s:o,s:s?,s:o,s:s?,s:s?,s:b,s:I,s:o}", "node", n->name, "known",
		    s->o->insecure || auth_listed(s->auth, n->name), "connected", n->connected,
		    "last_heartbeat",
		    n->last_heard_ms ? json_integer(wall - (mono - n->last_heard_ms)) : json_null(),
		    "agent_version", n->agent_version, "applied_revision",
		    n->held_revision ? json_integer(n->held_revision) : json_null(), "applied_hash",
		    n->held_hash[0] ? n->held_hash : NULL, "desired_hash", want_hash, "up_to_date",
		    up_to_date, "endpoints", (json_int_t)json_array_size(n->endpoints), "errors", errors);
		add_row(&u, n->name, row);
	}
	size_t table_rows = u.n;
	auth_each_listed(s->auth, add_unseen, &u);
	if (u.n > table_rows)
		qsort(u.v, u.n, sizeof(*u.v), status_row_cmp);
	json_t *out = json_array();
	for (size_t i = 0; i < u.n; i++)
		json_array_append_new(out, u.v[i].row);
	free(u.v);
	return out;
}

json_t *sessions_counters(struct sessions *s)
{
	json_t *c =
	    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "messages_malformed",
		      (json_int_t)s->count.malformed, "messages_unexpected", (json_int_t)s->count.unexpected,
		      "agents_refused", (json_int_t)(s->count.refused + auth_refused(s->auth)),
		      "resyncs_asked", (json_int_t)s->count.resync, "sends_failed",
		      (json_int_t)s->count.send_failed, "endpoint_lists_rejected",
		      (json_int_t)s->count.endpoints_rejected, "bundles_sent", (json_int_t)s->count.bundles,
		      "deltas_sent", (json_int_t)s->count.deltas, "acks", (json_int_t)s->count.acks);
	json_object_update_new(c,
			       json_pack("{s:I,s:I,s:I}", "nodes_refused", (json_int_t)s->count.nodes_refused,
					 "ack_results_ignored", (json_int_t)s->count.ack_results_ignored,
					 "agent_errors_cut", (json_int_t)s->count.errors_cut));
	intake_counters(s->intake, c);
	return c;
}

/* ---- life cycle ---- */

/* "DOING WHERE: zmq's error", malloc()ed. */
static char *zmq_failure(const char *doing, const char *where)
{
	char *e;
	if (asprintf(&e, "%s %s: %s", doing, where, zmq_strerror(errno)) < 0)
		abort();
	return e;
}

struct sessions *sessions_new(struct loop *l, void *zctx, const struct sessions_options *o, struct nodes *t,
			      struct compiler *c, struct store *st, char **err)
{
	struct sessions *s = xcalloc(1, sizeof(*s));
	s->o = o;
	s->loop = l;
	s->nodes = t;
	s->compiler = c;
	s->store = st;
	s->log = RATELIMIT_INIT(PEER_LOG_MS, PEER_LOG_BURST);
	s->refused_log = RATELIMIT_INIT(PEER_LOG_MS, PEER_LOG_BURST);
	s->intake = intake_new(st, c,
			       &(struct intake_options){.retention_ms = o->flow_retention_ms,
							.rate = o->flow_rate,
							.quota = o->flow_quota});
	*err = NULL;
	if (o->insecure && o->max_nodes && nodes_count(t) > o->max_nodes)
		log_warn("%zu nodes are known, more than --max-nodes %u: a new node is refused until "
			 "`bulkhead nodes "
			 "forget` drops some",
			 nodes_count(t), o->max_nodes);
	/* The ZAP handler is bound before any CURVE socket. */
	s->auth = auth_new(l, zctx, o->insecure ? NULL : o->allow_dir, t, rules_changed, s, err);
	if (!s->auth)
		goto err_free;
	auth_reload(s->auth, 0);
	s->router = zmq_socket(zctx, ZMQ_ROUTER);
	/* Memory per connection: PROTO_RCVHWM messages queued and one more
	 * decoded, each at most what an agent sends (plus CURVE's framing);
	 * past that libzmq stops reading the connection. */
	int one = 1, zero = 0, hwm = PROTO_RCVHWM, handshake_ms = HANDSHAKE_MS;
	int64_t max = PROTO_MAX_AGENT_MSG + 4096;
	if (!s->router || zmq_setsockopt(s->router, ZMQ_MAXMSGSIZE, &max, sizeof(max)) < 0 ||
	    zmq_setsockopt(s->router, ZMQ_RCVHWM, &hwm, sizeof(hwm)) < 0 ||
	    zmq_setsockopt(s->router, ZMQ_HANDSHAKE_IVL, &handshake_ms, sizeof(handshake_ms)) < 0 ||
	    zmq_setsockopt(s->router, ZMQ_ROUTER_MANDATORY, &one, sizeof(one)) < 0 ||
	    zmq_setsockopt(s->router, ZMQ_LINGER, &zero, sizeof(zero)) < 0) {
		*err = zmq_failure("agents' socket", o->listen);
		goto err_free;
	}
	if (!o->insecure && (zmq_setsockopt(s->router, ZMQ_CURVE_SERVER, &one, sizeof(one)) < 0 ||
			     zmq_setsockopt(s->router, ZMQ_CURVE_SECRETKEY, o->secret_key, KEY_Z85_LEN) < 0 ||
			     zmq_setsockopt(s->router, ZMQ_ZAP_DOMAIN, "bulkhead", 8) < 0)) {
		*err = zmq_failure("CURVE on", o->listen);
		goto err_free;
	}
	/* Connections counted as they come and go (the input's horizon). */
	static unsigned monitors; /* inproc names are released late: one each */
	snprintf(s->monitor_endpoint, sizeof(s->monitor_endpoint), "inproc://bulkhead-router-monitor-%u",
		 monitors++);
	if (zmq_socket_monitor(s->router, s->monitor_endpoint, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) <
		0 ||
	    !(s->monitor = zmq_socket(zctx, ZMQ_PAIR)) ||
	    zmq_setsockopt(s->monitor, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
	    zmq_connect(s->monitor, s->monitor_endpoint) < 0) {
		*err = zmq_failure("monitoring", o->listen);
		goto err_free;
	}
	if (zmq_bind(s->router, o->listen) < 0) {
		*err = zmq_failure("listening on", o->listen);
		goto err_free;
	}
	if (!(s->router_src = loop_add_zmq(l, s->router, on_router, s)) ||
	    !(s->monitor_src = loop_add_zmq(l, s->monitor, on_monitor, s)) ||
	    !(s->timer_src = loop_add_timer(l, o->heartbeat_ms / 4 ? o->heartbeat_ms / 4 : 1, on_timer, s))) {
		if (asprintf(err, "the controller's loop: %s", strerror(errno)) < 0)
			abort();
		goto err_free;
	}
	compiler_on_change(c, inputs_changed, s);
	inputs_changed(s); /* what changed before (resumed lists, --policy) */
	return s;

err_free:
	sessions_free(s);
	return NULL;
}

void sessions_free(struct sessions *s)
{
	if (!s)
		return;
	compiler_on_change(s->compiler, NULL, NULL);
	loop_cancel_deferred(s->loop, s);
	loop_remove(s->loop, s->router_src);
	loop_remove(s->loop, s->monitor_src);
	loop_remove(s->loop, s->timer_src);
	if (s->router) {
		zmq_socket_monitor(s->router, NULL, 0);
		zmq_close(s->router);
	}
	if (s->monitor)
		zmq_close(s->monitor);
	auth_free(s->auth);
	intake_free(s->intake);
	free(s);
}
