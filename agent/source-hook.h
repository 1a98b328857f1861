/* source-hook: the OCI hook's socket as an endpoint source (DESIGN §3,
 * no window without rules; source-hook.c). */
#pragma once

#include "source-engine.h"
#include "source.h"

/* How the hook source asks an engine source who a container is, and waits
 * for its table (source-engine.h: source_engine_hook(),
 * source_engine_hook_cancel(); the unit tests give their own). */
struct source_hook_engine {
	struct source *engine;
	void (*hook)(struct source *engine, struct engine_hook_waiter *w);
	void (*cancel)(struct source *engine, struct engine_hook_waiter *w);
};

/* The hook's socket (bulkhead-agent hook, hook.h): a unix socket at path,
 * 0600 (its directory made 0700 when missing), where only peer_uid (root:
 * 0) may connect. Each connection hands over one container (its id and
 * its namespace as an fd) and is answered once its table is in place, or
 * once it is quarantined. A namespace an endpoint holds already is that
 * endpoint's (source_claim()); any other container is engine's to name
 * (copied; NULL: none, and such a container is the hook's to quarantine).
 * Listens at once (errors logged): 0 and *out, -EBUSY when another agent
 * holds path (a lock beside it, path.lock, names its pid), another
 * negative errno. */
BH_MUST_CHECK int source_hook_new(const char *path, unsigned peer_uid,
				  const struct source_hook_engine *engine, struct source **out);
