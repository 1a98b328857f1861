/* The wire protocol between bulkhead-agent (DEALER) and bulkhead-controller
 * (ROUTER), DESIGN §4.
 *
 * A message is two frames: the type's name in ASCII ("HELLO") and a JSON
 * object that always carries "v": PROTO_VERSION. Anything else — more or
 * fewer frames, an unknown type, a body that is not JSON, a missing or
 * mistyped member, another version — is malformed: the receiver counts it,
 * logs it and drops it. Unknown members are ignored (room to grow).
 *
 * agent → controller
 *   HELLO      {"node", "agent": VERSION, "revision": N|null, "hash": H|null,
 *               "endpoints": [ENDPOINT...]}
 *              on connect, on RESYNC, and whenever a DELTA does not fit
 *   ACK        {"revision": N, "hash": H, "ok": BOOL, "error": S|null,
 *               "endpoints": [{"name", "applied": H|null, "error": S|null}]}
 *              after every BUNDLE or DELTA; ok: the whole bundle is in force
 *              on every endpoint; "hash" is the bundle now held
 *   ENDPOINTS  {"endpoints": [ENDPOINT...]}  the node's whole list, whenever
 *              the inventory or an address changes
 *   HEARTBEAT  {"revision": N|null, "hash": H|null}
 *   FLOWS      {"epoch": E, "seq": N, "start": MS, "end": MS,
 *               "flows": [FLOW...], "lost": [LOST...], "hits": [HIT...]}
 *              one window of denied and audited flows (and accepted new
 *              connections, "allow", where the policy observes all), and
 *              of what every rule counted meanwhile ("hits" may be
 *              absent). (epoch, seq)
 *              names the batch: epoch is the agent's start time (unix ms),
 *              seq counts from 1 within it. The agent resends a batch until
 *              FLOWS_ACK; the controller stores each (node, epoch, seq) once.
 *
 * controller → agent
 *   BUNDLE     {"revision": N, "bundle": BUNDLE-JSON}   the whole bundle
 *   DELTA      {"revision": N, "base": H, "hash": H2,
 *               "sets": [SET-DELTA|NAMED-DELTA...]}
 *              the bundle H with set and named-port table elements added and
 *              removed gives H2; an agent that does not hold H answers with
 *              HELLO (full resync)
 *   HEARTBEAT  {}
 *   FLOWS_ACK  {"epoch": E, "seq": N, "rejected": S|null}   batch stored
 *              (committed), or with "rejected": refused for good (the
 *              reason; malformed, it would be refused again); either way
 *              the agent drops it from its spool, and keeps a rejected one
 *              aside (agents before "rejected" read it as stored)
 *   RESYNC     {"reason": S}   "say HELLO": the controller does not know this
 *              connection (it restarted) or lost track of what it holds
 *   REFUSED    {"reason": S}   the HELLO was refused (wrong node for the key,
 *              bad version); the agent logs it and retries later
 *
 * ENDPOINT  = {"name", "netns": S|null, "labels": {K: V}, "addresses": [IP],
 *              "ports": {NAME: "tcp/N"|"udp/N"|"sctp/N"}}  "ports" only when
 *              it has some (named ports, DESIGN §2; checked as an inventory's)
 * FLOW      = {"endpoint", "dir": "ingress"|"egress", "src": IP, "dst": IP,
 *              "proto": "tcp"|"udp"|"sctp"|"icmp"|"icmpv6"|NUMBER-AS-TEXT,
 *              "port": N|null (destination port), "icmp_type": N|null,
 *              "icmp_code": N|null, "verdict": "deny"|"audit"|"allow",
 *              "policy": S|null, "rule": RULE-ID or the fallback's reason,
 *              "count": N, "first": MS, "last": MS}
 * HIT       = {"endpoint", "dir", "rule": RULE-ID or the fallback's reason,
 *              "policy": S|null, "verdict": "allow"|"deny"|"audit",
 *              "packets": N, "bytes": N}
 *             growth of the rule's kernel counters since the last report
 *             (connections' first packets: conntrack accepts the rest)
 * LOST      = {"endpoint": S|null, "enobufs": N, "gap": N, "spool": N}
 *             events the kernel dropped (receive buffer overrun: "enobufs"
 *             times, "gap" events by NFLOG sequence numbers) and flows the
 *             agent dropped from a full spool ("spool"); never silent
 * SET-DELTA = {"id", "ipv4": {"add": [E], "remove": [E]},
 *                    "ipv6": {"add": [E], "remove": [E]}}
 *             E as in the bundle's sets ("198.18.0.1", "A-B" ranges)
 * NAMED-DELTA = {"named_port": ID, "v4": {"add": [P], "remove": [P]},
 *                                  "v6": {"add": [P], "remove": [P]}}
 *             a table of the bundle's "named_ports" (bundle.h) by its id,
 *             P a pair as there: ["198.18.0.5", 8080]
 *
 * Numbers and sizes in FLOWS have ranges (the PROTO_FLOWS_* limits below);
 * "src" and "dst" are addresses of one family. A FLOWS body outside them is
 * malformed, and answered with a rejection when its (epoch, seq) can be read.
 *
 * A peer silent for PROTO_DEAD_HEARTBEATS heartbeat intervals is down.
 *
 * Sizes: each type's body has a largest size in bytes and in JSON values
 * (proto_limits), checked before it is parsed. The controller's socket
 * takes messages up to PROTO_MAX_AGENT_MSG and queues PROTO_RCVHWM of them
 * per connection, so a connection holds at most (PROTO_RCVHWM + 1) times
 * PROTO_MAX_AGENT_MSG before TCP makes its sender wait. Peer strings: a node
 * name follows inventory_node_name_valid, "agent" is 1-PROTO_VERSION_MAX
 * printable ASCII characters, an error is cut at PROTO_ERROR_MAX bytes. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "bulkhead/common.h"
#include "bulkhead/diag.h"

#define PROTO_VERSION 1
/* ZMQ_MAXMSGSIZE on both sides: a bundle of a large node fits with room. */
#define PROTO_MAX_MSG (64 << 20)
/* What an agent may send (the largest of its types' limits), and how many
 * of them wait per connection in the controller's socket: 2, as 1 leaves
 * libzmq 4.3 no room for the routing id it queues when a CURVE handshake
 * ends (the session then never starts). */
#define PROTO_MAX_AGENT_MSG   (16 << 20)
#define PROTO_RCVHWM	      2
#define PROTO_VERSION_MAX     64
#define PROTO_ERROR_MAX	      1024
#define PROTO_HEARTBEAT_MS    1000
#define PROTO_DEAD_HEARTBEATS 3

/* The ranges of a FLOWS body: what no honest agent exceeds, and what keeps
 * the controller's sums far from int64's end. An agent cuts a window into
 * batches of at most half of these (agent/flows.h), so that no one message
 * holds the controller long. */
#define PROTO_FLOWS_MAX	       8192			/* entries in "flows", "hits" or "lost" */
#define PROTO_FLOWS_COUNT_MAX  (INT64_C(1) << 40)	/* packets or events one entry counts */
#define PROTO_FLOWS_BYTES_MAX  (INT64_C(1) << 50)	/* bytes one hit counts */
#define PROTO_FLOWS_TIME_MAX   INT64_C(253402300799999) /* unix ms, 9999-12-31: epoch and times */
#define PROTO_FLOWS_SEQ_MAX    (INT64_C(1) << 53)
#define PROTO_FLOWS_NAME_MAX   253  /* bytes of an endpoint name */
#define PROTO_FLOWS_RULE_MAX   255  /* bytes of a rule id, policy or protocol name */
#define PROTO_FLOWS_REASON_MAX 1024 /* bytes of a FLOWS_ACK's "rejected" */

enum proto_type {
	PROTO_HELLO,
	PROTO_BUNDLE,
	PROTO_DELTA,
	PROTO_ACK,
	PROTO_ENDPOINTS,
	PROTO_HEARTBEAT,
	PROTO_FLOWS,
	PROTO_RESYNC,
	PROTO_REFUSED,
	PROTO_FLOWS_ACK,
	PROTO_TYPE_COUNT,
};

const char *proto_type_name(enum proto_type t);
/* The type a type frame names, or -1. */
int proto_type_parse(const void *type, size_t type_len);
/* Whether agents send this type (the controller drops the others unread). */
bool proto_sent_by_agent(enum proto_type t);

struct proto_limit {
	size_t bytes, items; /* a body's largest size, and most JSON values */
};
extern const struct proto_limit proto_limits[PROTO_TYPE_COUNT];

/* A decoded message. body is owned by the message; its shape has been
 * checked for the members listed above (their types and ranges), so readers
 * may use json_object_get on them without further type checks. */
struct proto_msg {
	enum proto_type type;
	json_t *body;
};

/* Decodes the two frames of a message from an untrusted peer. 0, or -EINVAL
 * with the reason in err (a static or caller-sized string). */
BH_MUST_CHECK int proto_decode(const void *type, size_t type_len, const void *body, size_t body_len,
			       struct proto_msg *out, char *err, size_t err_size);
void proto_msg_release(struct proto_msg *m);

/* The (epoch, seq) of a FLOWS body that did not decode, so that it can be
 * answered with a rejection: 0 when the body is a JSON object of this
 * protocol version with both in range, else -EINVAL. Nothing is written on
 * failure. */
BH_MUST_CHECK int proto_flows_key(const void *body, size_t body_len, int64_t *epoch, int64_t *seq);

/* Serialises a body (adds "v"); the caller frees the text with free().
 * Steals the reference to body. NULL on ENOMEM. */
char *proto_encode(json_t *body, size_t *len);

/* Endpoint lists (HELLO, ENDPOINTS) as an inventory document for node:
 * {"node": node, "endpoints": [...]} ready for inventory_load_json with
 * INVENTORY_NEED_ADDRESSES. New reference. */
json_t *proto_endpoints_inventory(const char *node, json_t *endpoints);

/* ---- element deltas between two bundles of one node ---- */

/* The DELTA "sets" list turning bundle JSON from into to, or NULL when they
 * differ in anything but the elements of sets and named-port tables (then
 * a full BUNDLE is needed: also when a table comes or goes). Both are
 * bundle_to_json() objects. New reference. */
json_t *proto_delta_make(json_t *from, json_t *to);
/* Applies a SET-DELTA and NAMED-DELTA list to a copy of bundle JSON base;
 * the result still has base's "hash", so bundle_from_json on it fails
 * unless the caller puts the expected hash in first (which is how a delta
 * is verified). NULL with the problem in diag. New reference. */
json_t *proto_delta_apply(json_t *base, json_t *sets, struct diag *diag);
