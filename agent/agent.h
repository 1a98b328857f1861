/* agent: the node agent's core. It keeps the endpoint table (fed by the
 * endpoint sources, source.h), the bundle in force (from the bundle
 * sources: the cache, --bundle, the controller session), and reconciles
 * the two: every endpoint's table is brought to the bundle in force
 * through the dataplane (dataplane.h), put back when it is missing, stale
 * or changed by someone else, with backoff when it keeps failing
 * (endpoint.c). What it holds goes to the controller through the session
 * (session.h) and to status.json (status.c).
 *
 * The core does no I/O of its own but the cache and status.json: every
 * kernel, namespace and network effect is behind the dataplane, the
 * sources and the session, so the unit tests run it without root on
 * fakes (tests/unit/test-agent-core.c). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "bulkhead/common.h"
#include "bulkhead/loop.h"
#include "dataplane.h"
#include "session.h"
#include "source.h"

struct agent_options {
	const char *node;
	const char *bundle_path; /* optional: a compiled bundle file, watched */
	const char *state_dir;	 /* optional with --once: cache and status.json */
	uint16_t nflog_group;
	unsigned counters_ms; /* rule hit counters are read this often */
	unsigned recheck_ms;  /* namespace paths re-checked, failures retried this often */
	/* The monotonic clock in ms (tests give their own); NULL: the real one. */
	uint64_t (*now_ms)(void);
};

struct agent;

/* Borrows o (strings included) and loop for its lifetime; takes
 * ownership of dp. */
struct agent *agent_new(const struct agent_options *o, struct loop *loop, struct dataplane *dp);
/* Only frees (agent_stop() first): the tables stay where they are. */
void agent_free(struct agent *a);

/* The controller session (takes ownership; before agent_start()). It
 * calls the core back through agent_session_peer. */
void agent_set_session(struct agent *a, struct session *s);
extern const struct session_peer agent_session_peer;
/* An endpoint source (takes ownership; before agent_start()). */
void agent_add_source(struct agent *a, struct source *s);

/* Loads the cached bundle and applies it, then what the sources and
 * --bundle say, and (unless once) starts the session and registers its
 * watches and timers on the loop. Returns the number of endpoints that
 * could not be brought up to date (0: all); with once, a rejected --bundle,
 * no bundle at all and a source that failed to start count as one more. */
unsigned agent_start(struct agent *a, bool once);

/* Shutdown: the rule counters read one last time and saved for the next
 * run, the session's last flow window and spool written, every waiter
 * told. The loop is not run again. */
void agent_stop(struct agent *a);

/* What the periodic check does: namespaces re-checked, endpoints retried,
 * the controller and status.json told. The loop calls it every
 * recheck_ms; tests call it directly. */
void agent_tick(struct agent *a);
