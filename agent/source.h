/* source: where the agent learns its node's endpoints and its bundles.
 *
 * ENDPOINT SOURCES say which container namespaces are on this node: name,
 * labels, namespace path, named ports. Today one, source-file.c
 * (--inventory FILE, re-read when it changes); next, container engines
 * (the Docker/podman API) and the OCI hook (DESIGN §3). A source is an
 * object that embeds struct source first and fills struct source_ops; the
 * core hands it a sink (struct source_sink) and a loop at start, and the
 * source tells the core what it knows, whenever it learns it, through the
 * source_*() calls below. That is all a new source needs:
 *
 *   - A source that lists everything at once (a file, an engine's list
 *     after a reconnect) calls source_set_all(): endpoints of this source
 *     missing from the list are dropped.
 *   - A source that hears of one container at a time (an engine's event
 *     stream) calls source_update() for one added or changed, and
 *     source_remove() for one gone.
 *   - A source whose input is refused whole (a malformed file) logs why
 *     and calls source_rejected(): nothing changes, the count is shown.
 *   - A source that must hold a container back until its table is in
 *     place (the OCI hook blocks the container's start) calls
 *     source_enforce() with a waiter after source_update(): the core
 *     opens the namespace and applies the bundle now, and calls the
 *     waiter's done() once, when the table is there (or not to be).
 *   - A source that reports a container it saw start (an engine's event,
 *     the hook) sets source_endpoint.quarantine: until the bundle in
 *     force has a table for it, its namespace holds the quarantine table
 *     (drop and report everything but loopback, agent/quarantine.h),
 *     never nothing. A source that sees a namespace born before it knows
 *     whose it is calls source_quarantine() with its path.
 *   - The OCI hook (source-hook.c) knows a container by its id and its
 *     namespace only, before it runs; its name and labels are the
 *     engine's (source-engine.h: source_engine_hook()). It calls
 *     source_claim() first: a namespace an endpoint holds already (a
 *     container joined to another's, an inventory's) is that endpoint's.
 *     When time runs out, source_isolate() puts the quarantine table in.
 *
 * Everything a source reports is outside input to the core, which checks
 * what it uses; a source checks its own syntax (names, label keys, paths)
 * before it reports, as inventory.c does. Endpoint names are unique on a
 * node: a name another source holds is refused (logged), the first keeps
 * it. A removed endpoint's table stays in its namespace (fail-static).
 * All calls happen on the loop's thread; none blocks.
 *
 * BUNDLE SOURCES are not endpoint sources: they say what to enforce, not
 * where. There are three, each with its own check of what it reads, and
 * all hand the core a decoded bundle for this node through struct
 * bundle_intake: the state directory's cache (cache.c: read at start, so
 * the last bundle is enforced before any controller answers; written by
 * the core whenever the bundle in force changes), --bundle FILE
 * (bundle-file.c, re-read when it changes) and the controller session
 * (session.h). The newest input wins; the cache gives way to either. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bulkhead/addr.h"
#include "bulkhead/bundle.h"
#include "bulkhead/common.h"
#include "bulkhead/loop.h"
#include "bulkhead/policy.h"

#include <jansson.h>

struct source;

/* A named port of an endpoint (DESIGN §2: "http" -> tcp/8080). The core
 * does not use them yet: the engines (issue 12) bring them and have them
 * reported to the controller. */
struct source_port {
	const char *name;
	uint8_t proto;
	uint16_t port;
};

/* What a source knows of one endpoint. Borrowed for the call: the core
 * copies what it keeps. */
struct source_endpoint {
	const char *name;		/* unique on the node */
	const char *netns;		/* the namespace's path; NULL: not known (yet) */
	const struct label_set *labels; /* NULL: none */
	/* What the source says the addresses are (an inventory's
	 * "addresses"); the dataplane's reading in the namespace wins. */
	const struct bh_addr *addrs;
	size_t n_addrs;
	const struct source_port *ports;
	size_t n_ports;
	/* The namespace itself (the OCI hook's), which netns names: the core
	 * opens it from this fd rather than from the path, once. Borrowed for
	 * the call; NULL: open netns. */
	const int *netns_fd;
	/* Until the bundle in force has a table for it, the quarantine
	 * table (a container the source saw start: it must not run without
	 * rules). Without it such an endpoint is left alone (an inventory's
	 * namespaces, containers found running). */
	bool quarantine;
};

/* A container about to run, as the OCI hook hands it over (source_claim()). */
struct source_claim {
	const char *netns; /* its namespace's bind mount, checked to be netns_fd's; NULL: none */
	int netns_fd;	   /* its network namespace, borrowed for the call */
};

/* Waits for one endpoint's table (source_enforce()). Owned by the
 * source, which keeps it alive until done() is called or it cancels. */
struct source_waiter {
	const char *endpoint; /* borrowed until done or cancelled */
	/* Called once: result 0 when the endpoint's table holds the bundle in
	 * force; -ENOENT the endpoint is gone or was never reported; -EIO
	 * applying failed (error says why; the core retries it with backoff,
	 * and the source may wait again); -ECANCELED the agent stops. */
	void (*done)(struct source_waiter *w, int result, const char *error);
	struct source_waiter *next; /* the core's */
};

/* The core, as sources see it. */
struct source_sink {
	void (*set_all)(void *core, struct source *s, const struct source_endpoint *v, size_t n);
	void (*update)(void *core, struct source *s, const struct source_endpoint *ep);
	void (*remove)(void *core, struct source *s, const char *name);
	void (*rejected)(void *core, struct source *s);
	void (*enforce)(void *core, struct source *s, struct source_waiter *w);
	void (*cancel)(void *core, struct source_waiter *w);
	void (*quarantine)(void *core, struct source *s, const char *netns);
	void (*changed)(void *core, struct source *s);
	int (*claim)(void *core, struct source *s, const struct source_claim *c, char *name, size_t namelen);
	int (*isolate)(void *core, struct source *s, const char *name, char *why, size_t whylen);
};

struct source_ops {
	const char *kind; /* "file", "docker", "hook": for logs */
	/* Reports what the source knows now, before it returns (so the
	 * cached bundle goes to those endpoints before anything newer is
	 * read), then, unless once, follows changes on loop. 0, or a
	 * negative errno (logged by the source; the agent goes on with what
	 * it has). */
	int (*start)(struct source *s, struct loop *loop, bool once);
	void (*free)(struct source *s); /* only frees */
	/* What status.json shows of the source (a new reference), or NULL;
	 * the member may be NULL. */
	json_t *(*status)(struct source *s);
};

struct source {
	const struct source_ops *ops;
	const struct source_sink *sink; /* set by agent_add_source() */
	void *core;
};

/* ---- what a source calls ---- */

static inline void source_set_all(struct source *s, const struct source_endpoint *v, size_t n)
{
	s->sink->set_all(s->core, s, v, n);
}
static inline void source_update(struct source *s, const struct source_endpoint *ep)
{
	s->sink->update(s->core, s, ep);
}
static inline void source_remove(struct source *s, const char *name)
{
	s->sink->remove(s->core, s, name);
}
static inline void source_rejected(struct source *s)
{
	s->sink->rejected(s->core, s);
}
/* Apply now: w->done() follows, perhaps before this returns. */
static inline void source_enforce(struct source *s, struct source_waiter *w)
{
	s->sink->enforce(s->core, s, w);
}
/* Forgets w without calling done (the source gave up waiting). */
static inline void source_cancel(struct source *s, struct source_waiter *w)
{
	s->sink->cancel(s->core, w);
}
/* What ops->status() says changed (connected, disconnected). */
static inline void source_changed(struct source *s)
{
	s->sink->changed(s->core, s);
}
/* The namespace at netns (outside input, as every path) was just made
 * for a container the source will report and does not know yet: the
 * quarantine table goes in now, unless an endpoint holds the namespace.
 * Once: the endpoint reported later takes it from there. */
static inline void source_quarantine(struct source *s, const char *netns)
{
	s->sink->quarantine(s->core, s, netns);
}

/* The endpoint that holds c's namespace already (present, or whose path
 * names it), if one does: its name goes into name, and one not open yet
 * opens it from c's fd. 0, or -ENOENT. */
static inline BH_MUST_CHECK int source_claim(struct source *s, const struct source_claim *c, char *name,
					     size_t namelen)
{
	return s->sink->claim(s->core, s, c, name, namelen);
}
/* Endpoint name is to be isolated until its bundle entry is in place: its
 * namespace gets the quarantine table now unless its table is there. 0
 * when one of the two is in place; a negative errno with why (-ENOENT: no
 * such endpoint, or its namespace not open). */
static inline BH_MUST_CHECK int source_isolate(struct source *s, const char *name, char *why, size_t whylen)
{
	return s->sink->isolate(s->core, s, name, why, whylen);
}

/* ---- the sources ---- */

/* --inventory FILE: the inventory format (inventory.h) for node; a file
 * that does not validate keeps the endpoints in force. */
struct source *source_file_new(const char *path, const char *node);

/* ---- bundle sources ---- */

enum bundle_origin {
	BUNDLE_FROM_CACHE,
	BUNDLE_FROM_FILE,
	BUNDLE_FROM_CONTROLLER,
};

/* The core, as bundle sources see it. */
struct bundle_intake {
	/* A bundle for this node, decoded and its hash checked (takes
	 * ownership). revision: the controller's; 0 from a file. */
	void (*take)(void *core, enum bundle_origin from, struct bundle *b, int64_t revision);
	/* Optional, for a core that passes bundles on (the session child):
	 * b, as take() has it, made by a DELTA's sets from the bundle whose
	 * hash is base, so that it can pass the delta instead of the whole.
	 * NULL: take() gets b. */
	void (*take_delta)(void *core, enum bundle_origin from, struct bundle *b, int64_t revision,
			   const char *base, json_t *sets);
	/* What the source read was refused (it logged why): the bundle in
	 * force stays; the controller is told error for revision. */
	void (*rejected)(void *core, enum bundle_origin from, int64_t revision, const char *error);
};
