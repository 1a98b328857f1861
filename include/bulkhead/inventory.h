/* Endpoints: container network namespaces on nodes (DESIGN §3).
 *
 * The agent's --inventory file names its local endpoints; the same format
 * with a top-level "node" and an "addresses" list per endpoint is the
 * controller's view of a node, which `bulkhead policy compile` takes. */
#pragma once

#include <jansson.h>

#include "bulkhead/addr.h"
#include "bulkhead/diag.h"
#include "bulkhead/policy.h"

/* A named port of an endpoint (DESIGN §2): "ports": {"http": "tcp/8080"}. */
struct endpoint_port {
	const char *name; /* policy.h: named_port_name_valid() */
	uint8_t proto;	  /* IPPROTO_TCP, _UDP, _SCTP */
	uint16_t port;
};

struct endpoint {
	const char *node;
	const char *name;  /* unique on its node */
	const char *netns; /* NULL when not given */
	struct label_set labels;
	struct bh_addr *addrs; /* sorted, unique */
	size_t n_addrs;
	struct endpoint_port *ports; /* sorted by name; optional "ports" */
	size_t n_ports;
};

/* An address that more than one endpoint claims. Nobody can tell which
 * claim is true (a stale report, a misconfigured or hostile node), so it
 * fails closed: no allow rule admits it through a label group, and every
 * deny rule (enforce or audit) naming a claimant's label group still
 * matches it (bundle.h: BUNDLE_SET_DENY_SUFFIX). */
struct addr_conflict {
	struct bh_addr addr;
	const struct endpoint *a, *b; /* the first two claimants, in (node, name) order */
};

/* One endpoint's claim of one address. */
struct addr_claim {
	struct bh_addr addr;
	const struct endpoint *ep;
};

struct inventory {
	struct arena *arena;
	struct endpoint *v; /* sorted by (node, name) once finished */
	size_t n, cap;
	struct addr_conflict *conflicts; /* sorted by address, once finished */
	size_t n_conflicts;
	/* Once finished: every claim, sorted by address, then by endpoint
	 * in (node, name) order; the lookups below search it and v. */
	struct addr_claim *claims;
	size_t n_claims;
	bool finished;
};

/* The largest inventory file read (fileio.h): every endpoint of a node. */
#define INVENTORY_MAX_BYTES (64u << 20)

enum inventory_flags {
	INVENTORY_NEED_ADDRESSES = 1 << 0, /* "addresses" required */
};

/* The one syntax of node names, wherever a name enters (inventories, an
 * agent's HELLO and --node, the CLI's --node): a host name's length, of
 * letters, digits, '.', '_' and '-', beginning with a letter or digit. */
bool inventory_node_name_valid(const char *node);
#define INVENTORY_NODE_NAME_RULE                                                                             \
	"use 1-253 letters, digits, '.', '_' or '-', beginning with a letter or digit"

/* The syntax of endpoint names (unique on a node): 1-63 letters, digits,
 * '.', '_' or '-', beginning with a letter or digit. */
bool inventory_endpoint_name_valid(const char *name);
#define INVENTORY_ENDPOINT_NAME_RULE                                                                         \
	"use 1-63 letters, digits, '.', '_' or '-', beginning with a letter or digit"

struct inventory *inventory_new(void);
void inventory_free(struct inventory *inv);

/* Appends the endpoints of one file/document (the inventory is no longer
 * finished then); a file is a regular one of at most INVENTORY_MAX_BYTES.
 * The node is the document's "node", else node_override; a document naming
 * another node than a given node_override is an error.
 * Returns 0, or
 * -EINVAL with every problem recorded in diag (nothing appended). */
BH_MUST_CHECK int inventory_load_file(struct inventory *inv, const char *path, const char *node_override,
				      unsigned flags, struct diag *diag);
BH_MUST_CHECK int inventory_load_json(struct inventory *inv, json_t *root, const char *node_override,
				      unsigned flags, struct diag *diag);
/* Sorts; reports duplicate node/name pairs (-EINVAL); finds the addresses
 * claimed by more than one endpoint (conflicts, not errors). 0, -EINVAL or
 * -ENOMEM. */
BH_MUST_CHECK int inventory_finish(struct inventory *inv, struct diag *diag);

/* Sorted, unique node names of a finished inventory, in a NULL-terminated
 * array owned by the inventory's arena. */
const char **inventory_nodes(const struct inventory *inv);

/* The endpoint that holds address a (first in (node, name) order when
 * several claim it), or NULL. A binary search once finished. */
const struct endpoint *inventory_find_by_addr(const struct inventory *inv, const struct bh_addr *a);
/* Whether more than one endpoint claims a (finished inventory). */
bool inventory_addr_conflicted(const struct inventory *inv, const struct bh_addr *a);
/* The conflict over a, or NULL (finished inventory). */
const struct addr_conflict *inventory_conflict_of(const struct inventory *inv, const struct bh_addr *a);
/* "198.18.1.5 is claimed by node-a/db-1 and node-b/rogue-1" */
void inventory_conflict_text(const struct addr_conflict *c, char *buf, size_t size);
/* What a conflict does, for every message that reports one. */
#define INVENTORY_CONFLICT_EFFECT "no allow rule admits it through a label group; deny rules still match it"

/* ep's named port name (DESIGN §2), or NULL: a binary search. */
const struct endpoint_port *inventory_port_of(const struct endpoint *ep, const char *name);

/* The endpoint "node/name", or NULL. A binary search once finished. */
const struct endpoint *inventory_find(const struct inventory *inv, const char *node, const char *name);
