/* engine-json: what a container engine's API says, as Docker 20.10 and
 * podman 4.3 (its compatible API) say it, parsed and judged without I/O
 * (source-engine.c does the talking). Everything here is outside input:
 * types, lengths and syntax are checked, and what does not fit is refused
 * with a reason rather than guessed at.
 *
 * What the two engines were seen to say differently (recorded in
 * tests/fixtures/engine/, see record.sh there):
 *   - a container that is removed: Docker "destroy", podman "remove";
 *     one that exits: "die" from both (podman's own API says "died": both
 *     are taken);
 *   - network events: Docker's Actor is the network (the container is the
 *     attribute "container", "type" the driver: "bridge", "null", "host")
 *     and come at every start, before the container's process runs;
 *     podman's Actor is the container itself (attribute "name" its name)
 *     and come only from `podman network connect/disconnect`;
 *   - a rename: Docker gives "oldName" ("/old"), podman only the new name;
 *   - container events carry the labels among the attributes, with the
 *     engine's own ("image", "name"; podman also "podId",
 *     "containerExitCode", "exitCode"; Docker "exitCode" at die), so a
 *     label of one of those names is lost in an event (inspect has them
 *     all);
 *   - HostConfig.NetworkMode: Docker names the network ("bhnet"), podman
 *     says "bridge"; both say "host", "none" and "container:ID";
 *   - SandboxKey: Docker's own file for every namespace it makes
 *     (EXEC-ROOT/netns/12 hex digits; "none" has one too, "host" names
 *     EXEC-ROOT/netns/default), "" for a container that joins another's;
 *     podman's /run/netns/netns-UUID for bridge networks, the other
 *     container's for one that joins it, "" for "none" and "host" (then
 *     the namespace is /proc/PID/ns/net);
 *   - the list (GET /containers/json): podman gives no HostConfig;
 *   - podman's events are not always in time order (its event log is
 *     written by several processes), and both engines take since= as
 *     "SECONDS.NANOSECONDS", inclusive;
 *   - GET /_ping: both say "Api-Version: 1.41"; podman adds
 *     "Libpod-Api-Version". */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bulkhead/policy.h"
#include "source.h"

/* The largest bodies read: a list of every container, one inspect, one
 * event (a line of the stream). More is refused, not truncated. */
#define ENGINE_LIST_MAX	   (32u << 20)
#define ENGINE_INSPECT_MAX (4u << 20)
#define ENGINE_EVENT_MAX   (1u << 20)
/* The API version the paths ask for: the engine's, at most this one (the
 * one the parsers were checked against), at least ENGINE_API_MIN. */
#define ENGINE_API_MAX_MINOR 41
#define ENGINE_API_MIN_MINOR 25
/* The label a container's endpoint carries to say where it came from. */
#define ENGINE_LABEL "bulkhead.io/engine"
/* Named ports: a label bulkhead.io/port.NAME = "tcp/8080". */
#define ENGINE_PORT_LABEL_PREFIX "bulkhead.io/port."

enum engine_kind {
	ENGINE_DOCKER,
	ENGINE_PODMAN,
};
const char *engine_kind_name(enum engine_kind k); /* "docker", "podman" */

/* Labels as the engine gave them: sorted by key, keys unique; every
 * string owned. Viewed as a struct label_set (same layout). */
struct engine_labels {
	struct label *v;
	size_t n;
};
void engine_labels_release(struct engine_labels *l);
static inline const struct label_set *engine_labels_set(const struct engine_labels *l)
{
	return (const struct label_set *)l;
}

/* A container, from an inspect (GET /containers/ID/json) or a list
 * entry (fewer fields). Every string owned. */
struct engine_container {
	char *id;		     /* 1-128 lowercase hex digits */
	char *name;		     /* without Docker's leading '/' */
	bool running;		     /* State.Running, or a list's State "running" */
	long pid;		     /* State.Pid; 0: none or not given */
	char *network_mode;	     /* HostConfig.NetworkMode; NULL: not given */
	char *sandbox_key;	     /* NetworkSettings.SandboxKey; NULL when "" or not given */
	struct engine_labels labels; /* Config.Labels (a list's Labels) */
};
void engine_container_release(struct engine_container *c);

/* One container's inspect. 0, or -EINVAL with why in err (*out zeroed: releasing it is safe). */
BH_MUST_CHECK int engine_inspect_parse(const char *text, size_t len, struct engine_container *out, char *err,
				       size_t errlen);
/* A list: *out is a malloc()ed array of *n (release each, free the
 * array). 0, or -EINVAL with why (nothing returned). */
BH_MUST_CHECK int engine_list_parse(const char *text, size_t len, struct engine_container **out, size_t *n,
				    char *err, size_t errlen);
/* The message of an error body ({"message": "No such container: x"}),
 * into buf (escaped later by whoever prints it); "" when there is none. */
void engine_error_message(const char *text, size_t len, char *buf, size_t size);

enum engine_action {
	ENGINE_EV_OTHER, /* anything else: ignored */
	ENGINE_EV_CREATE,
	ENGINE_EV_START,
	ENGINE_EV_DIE,	   /* "die", "died" */
	ENGINE_EV_DESTROY, /* "destroy", "remove" */
	ENGINE_EV_RENAME,
	ENGINE_EV_CONNECT, /* network connect / disconnect */
	ENGINE_EV_DISCONNECT,
};

/* One event of the stream (GET /events), either engine's. */
struct engine_event {
	enum engine_action action;
	char *id;	  /* the container's */
	char *name;	  /* the container's (NULL: Docker's network events) */
	char *old_name;	  /* a rename's, without '/' (NULL: podman's) */
	char *net_driver; /* Docker's network events: "bridge", "null", "host"... */
	/* Container events: the attributes that are not the engine's own
	 * (see above): the labels, as far as an event tells them. */
	struct engine_labels labels;
	int64_t time_ns; /* timeNano, else time in ns; 0: not given */
};
void engine_event_release(struct engine_event *ev);
/* 0; 1 for an event of no interest (another type or action: *out is
 * zeroed); -EINVAL with why for one that does not parse. */
BH_MUST_CHECK int engine_event_parse(const char *text, size_t len, struct engine_event *out, char *err,
				     size_t errlen);

/* The "Api-Version" of /_ping's headers ("1.41"): 0 with *minor, or
 * -EINVAL (not 1.N, or N out of 0..999). */
BH_MUST_CHECK int engine_api_version(const char *value, unsigned *minor);
/* One header line of a response ("Name: value\r\n"): true when its name
 * is name (any case), with its value trimmed into buf. */
bool engine_header(const char *line, size_t len, const char *name, char *buf, size_t size);

/* ---- the event stream: newline-delimited JSON ---- */

struct engine_lines {
	char *buf;
	size_t len, cap, max;
	bool skipping;		     /* in a line longer than max: dropped to its end */
	unsigned long long overlong; /* lines dropped so */
};
void engine_lines_init(struct engine_lines *l, size_t max);
void engine_lines_release(struct engine_lines *l);
/* Forgets a partial line (the stream was cut). */
void engine_lines_reset(struct engine_lines *l);
/* Takes len bytes of the stream and calls fn for each complete line that
 * is not empty (its text, without the newline, NUL-terminated; borrowed
 * for the call). */
void engine_lines_feed(struct engine_lines *l, const char *data, size_t len,
		       void (*fn)(void *arg, const char *line, size_t len), void *arg);

/* ---- what an endpoint is (DESIGN §3) ---- */

/* --select LABEL[=VALUE]: only containers with the label (and value). */
struct engine_select {
	const char *key;   /* NULL: every container */
	const char *value; /* NULL: any value */
};
/* Parses "KEY" or "KEY=VALUE" (label syntax), borrowing arg. 0 or
 * -EINVAL with why. */
BH_MUST_CHECK int engine_select_parse(const char *arg, struct engine_select *out, const char **why);
bool engine_select_matches(const struct engine_select *sel, const struct engine_labels *labels);

enum engine_verdict {
	ENGINE_ENDPOINT,
	ENGINE_NOT_RUNNING,
	ENGINE_HOST_NETWORK,  /* the node's own namespace: never an endpoint */
	ENGINE_JOINS_ANOTHER, /* --network container:X: X's endpoint covers it */
	ENGINE_NOT_SELECTED,  /* --select */
	ENGINE_NO_NAMESPACE,  /* no SandboxKey and no process */
	ENGINE_BAD_NAME,      /* not an endpoint name */
};

/* A container as an endpoint. Every string owned. */
struct engine_endpoint {
	char *name, *netns;
	struct engine_labels labels; /* the container's, checked, plus ENGINE_LABEL */
	struct source_port *ports;   /* names owned */
	size_t n_ports;
	/* What was changed or left out of the container's labels, and why
	 * ("" when nothing): for a log line. */
	char notes[512];
};
void engine_endpoint_release(struct engine_endpoint *e);
/* The source_endpoint view of e (borrowing it). */
void engine_endpoint_view(const struct engine_endpoint *e, struct source_endpoint *out);

/* Whether c is an endpoint of an agent following engine kind with sel,
 * and if so which (into *out, released by the caller). Labels follow the
 * endpoint syntax (DESIGN §2), and a container's may not: a key that is
 * not a label key is left out (no policy can name it); a value that is
 * not a label value is kept as "" (no policy can name that value either,
 * and so Exists, DoesNotExist and NotIn judge the container as they would
 * have). ENGINE_LABEL is always the engine's name. Labels
 * ENGINE_PORT_LABEL_PREFIX+NAME are the agent's, not the endpoint's: they
 * give the named ports; one that is not a port name with "tcp/N", "udp/N"
 * or "sctp/N" is left out. All noted in
 * out->notes. why says why not, for a log line. */
enum engine_verdict engine_endpoint_of(const struct engine_container *c, enum engine_kind kind,
				       const struct engine_select *sel, struct engine_endpoint *out,
				       char *why, size_t whylen);

/* ---- Docker's namespace files in the mount table ---- */

/* Calls fn for every nsfs mount in mountinfo text (/proc/self/mountinfo)
 * whose mount point is in directory dir and named like a Docker sandbox
 * (12 lowercase hex digits). The path is borrowed for the call. */
void engine_mounts_scan(const char *text, size_t len, const char *dir,
			void (*fn)(void *arg, const char *path), void *arg);
