/* agent: the node agent's core. It keeps, for every endpoint of the
 * inventory, the namespace's sockets (nftables requests and events,
 * addresses) and the table the current bundle asks for, and puts that
 * table back whenever it is missing, stale or tampered with. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "bulkhead/common.h"
#include "link.h"
#include "bulkhead/loop.h"

struct agent_options {
	const char *node;
	const char *inventory_path;
	const char *bundle_path; /* optional: a compiled bundle file, watched */
	const char *state_dir;   /* optional with --once: cache and status.json */
	bool null_dataplane;     /* build every batch, touch no kernel state */
	const struct link_options *link; /* optional: the controller */
	uint16_t nflog_group;
	unsigned flow_window_ms; /* denied flows are aggregated this long */
	unsigned counters_ms;	 /* rule hit counters are read this often */
	unsigned recheck_ms;	 /* namespace paths re-checked, failures retried this often */
};

struct agent;

/* Borrows o (strings included) and loop for its lifetime. */
struct agent *agent_new(const struct agent_options *o, struct loop *loop);
void agent_free(struct agent *a);

/* Loads the cached bundle and applies it, then the inventory and --bundle,
 * and (unless once) registers its watches and timers on the loop. Returns
 * the number of endpoints that could not be brought up to date (0: all);
 * with once, a rejected --bundle or no bundle at all counts as one more. */
unsigned agent_start(struct agent *a, bool once);

/* A decoded message from the controller, as the link hands it over
 * (link_callbacks.message); what the agent answers goes to the link that
 * agent_start() made from o->link (required). The link calls it for every
 * message it reads; the fuzzer (tests/fuzz/fuzz-agent.c), which has no
 * controller, calls it directly. Borrows m. */
void agent_link_message(struct agent *a, const struct proto_msg *m);
