/* session: the agent's conversation with the controller (DESIGN §4,
 * proto.h), as an interface between the core and whatever speaks for it.
 *
 * The core tells the session what it holds (session_in_force(), the
 * endpoint list, ACKs) and hands it what the rules saw (logged packets and
 * rule hit counts, which become FLOWS batches in the session's spool).
 * The session calls the core back with bundles it has taken in from the
 * wire (BUNDLE, or a DELTA applied to the bundle in force), decoded, their
 * hash checked and addressed to this node (struct bundle_intake), and
 * with what it refused. Everything crosses as data the core owns or
 * copies, in one direction at a time, and no call waits for an answer
 * (session_status() reads what the session last reported): so a later
 * privilege-separation step can put a proxy behind this interface that
 * runs session.c in a child without capabilities, passes each call as a
 * message (the bundle in force as its canonical encoding), keeps the
 * child's last status, and hands the core canonical bundles that the core
 * decodes and checks again.
 *
 * session.c is the implementation over link.c (ZeroMQ, CURVE); the unit
 * tests have a fake. Every implementation embeds struct session first. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "bulkhead/bundle.h"
#include "bulkhead/loop.h"
#include "link.h"
#include "nflog.h"
#include "source.h"

struct session;

/* The core, as the session sees it. */
struct session_peer {
	struct bundle_intake bundles; /* from BUNDLE and DELTA; origin BUNDLE_FROM_CONTROLLER */
	/* Something status.json shows changed (the link, the flow spool). */
	void (*changed)(void *core);
};

struct session_ops {
	int (*start)(struct session *s);
	void (*in_force)(struct session *s, const struct bundle *b, int64_t revision, bool certain);
	void (*endpoints)(struct session *s, json_t *list);
	void (*ack)(struct session *s, int64_t revision, bool ok, const char *error, json_t *endpoints,
		    bool always);
	void (*packet)(struct session *s, const char *endpoint, const struct nflog_event *ev,
		       const char *policy, const char *rule, uint64_t now_ms);
	void (*packets_lost)(struct session *s, const char *endpoint, uint64_t enobufs, uint64_t gap);
	void (*hit)(struct session *s, const char *endpoint, enum direction dir, const char *rule,
		    const char *policy, const char *verdict, uint64_t packets, uint64_t bytes,
		    uint64_t now_ms);
	void (*status)(struct session *s, json_t **controller, json_t **flows);
	void (*stop)(struct session *s);
	void (*free)(struct session *s);
};

struct session {
	const struct session_ops *ops;
};

struct session_options {
	const char *node;
	const char *state_dir;	 /* the flow spool; NULL: memory only */
	unsigned flow_window_ms; /* logged packets are aggregated this long */
	const struct link_options *link;
};

/* The controller session over link.c. Borrows o (and what it points to),
 * loop, and peer/core for its lifetime. Nothing is sent before
 * session_start(). */
struct session *session_new(struct loop *loop, const struct session_options *o,
			    const struct session_peer *peer, void *core);

/* ---- what the core calls ---- */

/* Connects and says HELLO with what it was told it holds. 0, or a
 * negative errno (logged: the agent enforces the bundle in force only). */
static inline int session_start(struct session *s)
{
	return s->ops->start(s);
}
/* The bundle in force (borrowed until the next call or session_stop();
 * NULL: none) and the controller's revision of it (0: none known).
 * certain false: some table is newer than it, so the controller is told
 * the agent holds nothing certain and sends its bundle. */
static inline void session_in_force(struct session *s, const struct bundle *b, int64_t revision, bool certain)
{
	s->ops->in_force(s, b, revision, certain);
}
/* The node's whole endpoint list changed (takes the reference):
 * [{"name", "netns", "labels", "addresses"}...], as ENDPOINTS sends it. */
static inline void session_endpoints(struct session *s, json_t *list)
{
	s->ops->endpoints(s, list);
}
/* What the bundle of revision holds, endpoint by endpoint (takes the
 * reference to endpoints: [{"name", "applied", "error"}...]); error for
 * the whole. Unless always, an ACK that says what the last one said is
 * not sent again. */
static inline void session_ack(struct session *s, int64_t revision, bool ok, const char *error,
			       json_t *endpoints, bool always)
{
	s->ops->ack(s, revision, ok, error, endpoints, always);
}
/* One packet a rule of endpoint logged, named by the bundle rule (policy
 * NULL for a chain's fallback). */
static inline void session_packet(struct session *s, const char *endpoint, const struct nflog_event *ev,
				  const char *policy, const char *rule, uint64_t now_ms)
{
	s->ops->packet(s, endpoint, ev, policy, rule, now_ms);
}
static inline void session_packets_lost(struct session *s, const char *endpoint, uint64_t enobufs,
					uint64_t gap)
{
	s->ops->packets_lost(s, endpoint, enobufs, gap);
}
/* What a rule counted since the last reading (flows_hit()). */
static inline void session_hit(struct session *s, const char *endpoint, enum direction dir, const char *rule,
			       const char *policy, const char *verdict, uint64_t packets, uint64_t bytes,
			       uint64_t now_ms)
{
	s->ops->hit(s, endpoint, dir, rule, policy, verdict, packets, bytes, now_ms);
}
/* For status.json: the link and the flow spool (new references, either
 * may be NULL). */
static inline void session_status(struct session *s, json_t **controller, json_t **flows)
{
	s->ops->status(s, controller, flows);
}
/* Shutdown: the last flow window and every unacknowledged batch go to
 * the spool file. Nothing is sent after it. */
static inline void session_stop(struct session *s)
{
	s->ops->stop(s);
}
/* Only frees. Accepts NULL. */
static inline void session_free(struct session *s)
{
	if (s)
		s->ops->free(s);
}
