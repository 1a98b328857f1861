/* The controller session (session.h) over link.c: HELLO and heartbeats
 * with what the agent holds, BUNDLE and DELTA in, ACK and ENDPOINTS out,
 * and the denied-flow batches (flows.h) with their acknowledgements. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/escape.h"
#include "bulkhead/log.h"
#include "bulkhead/utf8.h"
#include "flows.h"
#include "session.h"

#define FLOW_TICK_MS 100
/* RESYNCs this soon after a HELLO answer messages sent before it. */
#define RESYNC_QUIET_MS 100

struct ctl_session {
	struct session s;
	const struct session_options *o;
	struct loop *loop;
	const struct session_peer *peer;
	void *core;
	struct link *link;   /* NULL until started, or when it could not be made */
	struct flows *flows; /* NULL once stopped */
	struct loop_source *flow_timer;
	/* What the core says it holds. */
	const struct bundle *in_force; /* borrowed */
	int64_t revision;
	bool certain;
	json_t *endpoints;	/* the last list, for every HELLO */
	char *last_ack;		/* the last ACK sent (JSON), to send again only when it changes */
	uint64_t last_hello_ms; /* monotonic */
};

static struct ctl_session *ctl(struct session *s)
{
	return (struct ctl_session *)s;
}

/* What the agent tells the controller it holds: nothing certain while a
 * table is newer than its bundle, so that the controller sends one. */
static json_t *held_revision(const struct ctl_session *c)
{
	return c->certain && c->in_force && c->revision ? json_integer(c->revision) : json_null();
}

static json_t *held_hash(const struct ctl_session *c)
{
	return c->certain && c->in_force ? json_string(c->in_force->hash) : json_null();
}

static void send_hello(void *data)
{
	struct ctl_session *c = data;
	link_send(c->link, PROTO_HELLO,
		  json_pack("{s:s,s:s,s:o,s:o,s:O}", "node", c->o->node, "agent", BULKHEAD_VERSION,
			    "revision", held_revision(c), "hash", held_hash(c), "endpoints",
			    c->endpoints ? c->endpoints : json_array()));
	c->last_hello_ms = (uint64_t)clock_mono_ms();
	/* A new session may not have heard the last ACK. */
	free(c->last_ack);
	c->last_ack = NULL;
	/* A new session may be a new controller: every unacknowledged batch
	 * goes again after the HELLO (it stores each batch once). */
	if (c->flows)
		flows_resend_all(c->flows);
}

static json_t *heartbeat_body(void *data)
{
	struct ctl_session *c = data;
	return json_pack("{s:o,s:o}", "revision", held_revision(c), "hash", held_hash(c));
}

/* A bundle from the controller (b NULL: refused, the reasons in d),
 * checked for this node and handed to the core; with the DELTA it came
 * from (base, sets) when it came from one. */
static void take_bundle(struct ctl_session *c, int64_t revision, struct bundle *b, struct diag *d,
			const char *what, const char *base, json_t *sets)
{
	char error[512] = "";
	if (!b) {
		snprintf(error, sizeof(error), "%s rejected: %s%s%s", what, d->n ? d->v[0].path : "",
			 d->n ? ": " : "", d->n ? d->v[0].message : "");
	} else if (strcmp(b->node, c->o->node) != 0) {
		snprintf(error, sizeof(error), "%s is for node \"%s\", not \"%s\"", what, b->node,
			 c->o->node);
		bundle_free(b);
		b = NULL;
	}
	/* The bundle's own text, maybe cut inside a character: the ACK that
	 * carries it must be UTF-8 (json_pack refuses it, and the agent
	 * aborted). */
	utf8_cut(error);
	if (!b) {
		log_error("%s; keeping the one in force", error);
		c->peer->bundles.rejected(c->core, BUNDLE_FROM_CONTROLLER, revision, error);
		return;
	}
	if (base && c->peer->bundles.take_delta)
		c->peer->bundles.take_delta(c->core, BUNDLE_FROM_CONTROLLER, b, revision, base, sets);
	else
		c->peer->bundles.take(c->core, BUNDLE_FROM_CONTROLLER, b, revision);
}

static void on_bundle(struct ctl_session *c, json_t *body)
{
	struct diag d;
	diag_init(&d, "bundle from the controller");
	struct bundle *b = bundle_from_json(json_object_get(body, "bundle"), &d);
	take_bundle(c, json_integer_value(json_object_get(body, "revision")), b, &d,
		    "bundle from the controller", NULL, NULL);
	diag_release(&d);
}

/* A DELTA changes elements of the bundle in force: applied to a copy of
 * it (bundle_apply_delta, no JSON of the whole), then held to the hash the
 * controller computed for the result, as a whole bundle is. */
static void on_delta(struct ctl_session *c, json_t *body)
{
	const char *base = json_string_value(json_object_get(body, "base"));
	if (!c->in_force || strcmp(base, c->in_force->hash) != 0) {
		log_info("delta against %.12s, which we do not hold: asking for the whole bundle", base);
		send_hello(c);
		return;
	}
	struct diag d;
	diag_init(&d, "delta");
	struct bundle *b = bundle_apply_delta(c->in_force, json_object_get(body, "sets"), &d);
	if (!b) {
		log_error("delta does not apply (%s%s%s); asking for the whole bundle",
			  d.n ? d.v[0].path : "", d.n ? ": " : "", d.n ? d.v[0].message : "no memory");
		diag_release(&d);
		send_hello(c);
		return;
	}
	b = bundle_hash_checked(b, json_string_value(json_object_get(body, "hash")), &d);
	take_bundle(c, json_integer_value(json_object_get(body, "revision")), b, &d, "delta", base,
		    json_object_get(body, "sets"));
	diag_release(&d);
}

static void on_link_message(void *data, const struct proto_msg *m)
{
	struct ctl_session *c = data;
	switch (m->type) {
	case PROTO_BUNDLE:
		on_bundle(c, m->body);
		break;
	case PROTO_DELTA:
		on_delta(c, m->body);
		break;
	case PROTO_HEARTBEAT:
		break;
	case PROTO_FLOWS_ACK:
		if (c->flows) {
			uint64_t epoch = (uint64_t)json_integer_value(json_object_get(m->body, "epoch")),
				 seq = (uint64_t)json_integer_value(json_object_get(m->body, "seq"));
			const char *rejected = json_string_value(json_object_get(m->body, "rejected"));
			if (rejected)
				flows_rejected(c->flows, epoch, seq, rejected);
			else
				flows_acked(c->flows, epoch, seq);
			c->peer->changed(c->core);
		}
		break;
	case PROTO_RESYNC:
		/* A restarted controller answers each message we had queued with
		 * a RESYNC; one HELLO on its way answers them all. */
		if ((uint64_t)clock_mono_ms() - c->last_hello_ms < RESYNC_QUIET_MS)
			break;
		log_info("controller asks for a resync: %s",
			 ESCAPED(json_string_value(json_object_get(m->body, "reason"))));
		send_hello(c);
		break;
	case PROTO_REFUSED:
		log_error("controller refused this agent: %s",
			  ESCAPED(json_string_value(json_object_get(m->body, "reason"))));
		break;
	default:
		log_warn("controller sent an unexpected %s; dropped", proto_type_name(m->type));
		break;
	}
}

static void send_flows(void *data, json_t *body)
{
	link_send(((struct ctl_session *)data)->link, PROTO_FLOWS, body);
}

/* Closes the flow window when due and sends what waits. */
static void on_flow_tick(void *data, uint32_t events)
{
	struct ctl_session *c = data;
	uint64_t now = (uint64_t)clock_wall_ms();
	flows_tick(c->flows, now, c->o->flow_window_ms, false);
	flows_send(c->flows, now, send_flows, c);
}

/* ---- the interface ---- */

static int ctl_start(struct session *s)
{
	struct ctl_session *c = ctl(s);
	static const struct link_callbacks cb = {
	    .message = on_link_message, .hello = send_hello, .heartbeat = heartbeat_body};
	c->link = link_new(c->loop, c->o->link, &cb, c);
	if (!c->link) {
		int r = -errno;
		log_error("no controller link; enforcing the bundle in force only");
		return r ? r : -EIO;
	}
	send_hello(c);
	if (!(c->flow_timer = loop_add_timer(c->loop, FLOW_TICK_MS, on_flow_tick, c)))
		log_error("timer: %m; denied flows are not reported");
	return 0;
}

static void ctl_in_force(struct session *s, const struct bundle *b, int64_t revision, bool certain)
{
	struct ctl_session *c = ctl(s);
	c->in_force = b;
	c->revision = revision;
	c->certain = certain;
}

static void ctl_endpoints(struct session *s, json_t *list)
{
	struct ctl_session *c = ctl(s);
	json_decref(c->endpoints);
	c->endpoints = list;
	if (c->link)
		link_send(c->link, PROTO_ENDPOINTS, json_pack("{s:O}", "endpoints", list));
}

static void ctl_ack(struct session *s, int64_t revision, bool ok, const char *error, json_t *endpoints,
		    bool always)
{
	struct ctl_session *c = ctl(s);
	json_t *body = json_pack("{s:I,s:o,s:b,s:s?,s:o}", "revision", (json_int_t)revision, "hash",
				 held_hash(c), "ok", ok, "error", error, "endpoints", endpoints);
	char *text = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	if (!c->link || (!always && text && c->last_ack && strcmp(text, c->last_ack) == 0)) {
		free(text);
		json_decref(body);
		return;
	}
	free(c->last_ack);
	c->last_ack = text;
	link_send(c->link, PROTO_ACK, body);
}

static void ctl_packet(struct session *s, const char *endpoint, const struct nflog_event *ev,
		       const char *policy, const char *rule, uint64_t now_ms)
{
	struct ctl_session *c = ctl(s);
	if (c->flows)
		flows_record(c->flows, endpoint, ev, policy, rule, now_ms);
}

static void ctl_packets_lost(struct session *s, const char *endpoint, uint64_t enobufs, uint64_t gap)
{
	struct ctl_session *c = ctl(s);
	if (c->flows)
		flows_lost(c->flows, endpoint, enobufs, gap);
}

static void ctl_hit(struct session *s, const char *endpoint, enum direction dir, const char *rule,
		    const char *policy, const char *verdict, uint64_t packets, uint64_t bytes,
		    uint64_t now_ms)
{
	struct ctl_session *c = ctl(s);
	if (c->flows)
		flows_hit(c->flows, endpoint, dir, rule, policy, verdict, packets, bytes, now_ms);
}

static void ctl_status(struct session *s, json_t **controller, json_t **flows)
{
	struct ctl_session *c = ctl(s);
	*controller = c->link ? link_status(c->link) : NULL;
	*flows = c->flows ? flows_status(c->flows) : NULL;
}

static void ctl_stop(struct session *s)
{
	struct ctl_session *c = ctl(s);
	loop_remove(c->loop, c->flow_timer);
	c->flow_timer = NULL;
	if (c->flows) { /* the last window, and every unacknowledged batch, to the spool file */
		flows_tick(c->flows, (uint64_t)clock_wall_ms(), c->o->flow_window_ms, true);
		flows_free(c->flows);
		c->flows = NULL;
	}
	c->in_force = NULL;
}

static void ctl_free(struct session *s)
{
	struct ctl_session *c = ctl(s);
	loop_remove(c->loop, c->flow_timer);
	flows_free(c->flows); /* NULL once stopped */
	link_free(c->link);
	json_decref(c->endpoints);
	free(c->last_ack);
	free(c);
}

static const struct session_ops ctl_ops = {
    .start = ctl_start,
    .in_force = ctl_in_force,
    .endpoints = ctl_endpoints,
    .ack = ctl_ack,
    .packet = ctl_packet,
    .packets_lost = ctl_packets_lost,
    .hit = ctl_hit,
    .status = ctl_status,
    .stop = ctl_stop,
    .free = ctl_free,
};

struct session *session_new(struct loop *loop, const struct session_options *o,
			    const struct session_peer *peer, void *core)
{
	struct ctl_session *c = xcalloc(1, sizeof(*c));
	c->s.ops = &ctl_ops;
	c->o = o;
	c->loop = loop;
	c->peer = peer;
	c->core = core;
	/* Denied flows go to the controller; without one, nobody reads them. */
	c->flows = flows_new(o->state_dir, (uint64_t)clock_wall_ms());
	return &c->s;
}
