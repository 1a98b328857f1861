/* source-engine: a container engine as an endpoint source (source.h):
 * --engine docker[:SOCKET] or podman[:SOCKET], the Docker Engine API over
 * the engine's unix socket (podman's service speaks the same compatible
 * API), through engine-http.c on the agent's loop.
 *
 * What it does (DESIGN §3):
 *   - GET /_ping for the API version (the engine's, at most 1.41: the
 *     one the parsers were checked against), then every path is
 *     /v1.N/...;
 *   - GET /events (containers: create, start, die, destroy/remove,
 *     rename; networks: connect, disconnect), followed for as long as the
 *     engine keeps it open; once it answers, the list of running
 *     containers (GET /containers/json) and an inspect of each, and the
 *     whole list is reported (source_set_all()); an events request whose
 *     headers do not come within 10 s is given up and made again;
 *   - then each event: start, connect, disconnect, rename: inspect and
 *     report that container; die, destroy: its endpoint is removed (its
 *     address leaves every group);
 *   - the stream cut (the engine restarted, the socket went): reconnect
 *     with backoff (0.2 s doubling to 5 s), events again from a second
 *     before the last one seen (since=; what was seen already is skipped),
 *     and the whole list again; every 30 s the list is compared again
 *     anyway, so nothing drifts;
 *   - what an endpoint is: engine_endpoint_of() (engine-json.h).
 *
 * No window (DESIGN §3): a container whose start the source saw is
 * reported with source_endpoint.quarantine: until the bundle in force
 * has its table, its namespace holds the quarantine table. Docker has no
 * hooks, but it makes a container's namespace (a bind mount in
 * EXEC-ROOT/netns) before the container's process runs (some 0.4 s before
 * its start event here), after a "network connect" event that names the
 * container. The source watches the mount table: a new namespace there
 * that is no known container's is the namespace of the container that
 * connected and has not started; when exactly one has, it is reported at
 * once under its name, with its labels from the create event, and gets
 * the quarantine table (then, as soon as the controller has compiled it,
 * its real table) before its first instruction. When several start at
 * once, the namespace gets the quarantine table anonymously
 * (source_quarantine()) if every one of them is an endpoint; each is
 * reported at its start event. The directory is learnt from the
 * SandboxKey of the containers inspected (/run/docker/netns until then).
 *
 * For the OCI hook (source-hook.c, podman): see source_engine_hook(). */
#pragma once

#include <stdbool.h>

#include "engine-json.h"
#include "source.h"

struct source_engine_options {
	enum engine_kind kind;
	const char *socket; /* NULL: the engine's default (below) */
	struct engine_select select;
	/* How long the events request may wait for its answer's headers
	 * before it is given up and made again; 0: EVENTS_ANSWER_MS. */
	unsigned events_answer_ms;
};
#define EVENTS_ANSWER_MS     10000
#define ENGINE_DOCKER_SOCKET "/var/run/docker.sock"
#define ENGINE_PODMAN_SOCKET "/run/podman/podman.sock"

/* Parses --engine's argument, "docker", "podman", "docker:/path/sock";
 * borrows arg. 0 or -EINVAL with why. */
BH_MUST_CHECK int source_engine_parse(const char *arg, struct source_engine_options *o, const char **why);

/* Copies o. */
struct source *source_engine_new(const struct source_engine_options *o);

/* ---- for the OCI hook ----
 *
 * The hook runs while the engine holds the container's lock: asking the
 * engine about that container then (inspect, even the list) waits until
 * the hook returns. But the create event comes first (podman: some 0.5 s
 * before the hook), with the container's name and labels, and the source
 * keeps what it says. So a hook source asks this one:
 *
 *   - source_engine_find(s, id): what is known of container id now (its
 *     name, labels; running and namespace once inspected), or NULL;
 *   - source_engine_hook(s, w): "container w->id is being created, its
 *     network namespace is w->netns (the OCI config's path, which is the
 *     SandboxKey podman reports later: the same string keeps the endpoint
 *     from being reopened): report it and tell me when its table is in
 *     place". As soon as its name and labels are known (at once, or when
 *     the create event comes), the source reports it as an endpoint with
 *     quarantine (the quarantine table goes in as the namespace is
 *     opened, before the bundle has it), then w->done() is called once:
 *     0 when its real table is in place; 1 when the container is not an
 *     endpoint (not selected, host network: error says why), so it starts
 *     unmanaged (under a name no endpoint may have: isolated, its
 *     namespace keeps the quarantine table); -EIO when applying fails (error says why); -ENOENT when
 *     the container went away; -ECANCELED when the agent stops. A
 *     container whose namespace is another endpoint's (--network
 *     container:X) is answered when that endpoint's table is in place.
 *     The hook source bounds the wait itself: source_engine_hook_cancel()
 *     gives up (no done() then); the endpoint stays reported and
 *     quarantined until its table comes. A waiter still waiting for its
 *     create event when the source is freed is forgotten, not told: the
 *     hook source cancels its own before.
 */
const struct engine_container *source_engine_find(struct source *s, const char *id);

struct engine_hook_waiter {
	const char *id;	   /* borrowed until done or cancelled */
	const char *netns; /* borrowed until done or cancelled */
	/* The namespace itself (borrowed until done or cancelled; NULL:
	 * none): the endpoint is opened from it, not from netns. */
	const int *netns_fd;
	/* endpoint: the name it is reported under (NULL: not an endpoint). */
	void (*done)(struct engine_hook_waiter *w, int result, const char *endpoint, const char *error);
	/* The source's. */
	struct source_waiter sw;
	char *endpoint;
	struct engine_hook_waiter *next;
};
void source_engine_hook(struct source *s, struct engine_hook_waiter *w);
void source_engine_hook_cancel(struct source *s, struct engine_hook_waiter *w);

/* For tests: what the mount table's watch does when it shows a namespace
 * at path that it did not show before (Docker's, made before its
 * container starts). */
void source_engine_namespace_seen(struct source *s, const char *path);
