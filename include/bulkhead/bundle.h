/* The bundle: what one node must enforce, compiled by the controller and
 * applied by the agent (DESIGN §1). It is the one interface between them and
 * carries no labels or selectors: per local endpoint, ordered rule lists per
 * direction and the address sets those rules reference.
 *
 * Encoding is canonical JSON; the hash is the SHA-256 of the encoding
 * without the "hash" member, so equal bundles have equal hashes. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "bulkhead/addr.h"
#include "bulkhead/common.h"
#include "bulkhead/diag.h"
#include "bulkhead/policy.h"

#define BUNDLE_FORMAT	1
#define BUNDLE_HASH_HEX 64

enum set_kind {
	SET_HOSTS,  /* single addresses of label-group members (nft hash set) */
	SET_RANGES, /* CIDRs minus excepts as ranges (nft interval set) */
};

/* An address that two endpoints claim (inventory.h: conflicts) fails
 * closed: allow rules must not admit it, deny rules must still match it.
 * So a label group has two sets: its id, what allow rules reference, holds
 * its members' addresses but the contested ones; id + this suffix, what
 * deny rules (enforce or audit) reference, holds them all. The ids do not
 * depend on the conflicts, so a conflict coming or going changes elements
 * only (a delta). A network group has one set, its id, for both. Neither
 * group names nor inline ids can contain '#'. */
#define BUNDLE_SET_DENY_SUFFIX "#deny"

struct bundle_set {
	const char *id; /* group name, or POLICY/DIRECTION/RULE/PEER; + BUNDLE_SET_DENY_SUFFIX */
	enum set_kind kind;
	struct range_list v4, v6; /* normalized */
};

/* Named ports for egress (DESIGN §2): a name resolves on each destination,
 * so an egress rule naming "tcp/http" matches a packet when its
 * destination address is in the rule's peers (or any peer) AND (address,
 * destination port) is a pair of this table. The table is what the
 * destinations the controller knows call proto/name: every (address,
 * number) of an endpoint whose "ports" map name to proto/number. One
 * table per proto/name that the bundle's egress rules use; id "tcp/http"
 * for allow rules (contested addresses left out) and "tcp/http#deny"
 * (BUNDLE_SET_DENY_SUFFIX) for deny rules, enforce or audit (contested
 * addresses in, with every number a claimant gives). It holds at least
 * the addresses the rules' peers could match. A member joining, leaving
 * or renumbering is an element change in a table: a delta. */
struct bundle_named_addr {
	struct bh_addr addr;
	uint16_t port;
};

struct bundle_named_port {
	const char *id;		     /* "tcp/http" or "tcp/http#deny" */
	const char *name;	     /* "http" */
	uint8_t proto;		     /* IPPROTO_TCP, _UDP, _SCTP */
	struct bundle_named_addr *v; /* sorted by address, then port; unique */
	size_t n;
};

/* The longest table id: "sctp/" + a 15-character name + "#deny", NUL. */
#define BUNDLE_NAMED_ID_MAX 32

/* Orders bundle_named_addr by address (IPv4 first), then port; for qsort. */
int bundle_named_addr_cmp(const void *a, const void *b);
/* Whether (a, port) is a pair of table t: a binary search. */
bool bundle_named_port_contains(const struct bundle_named_port *t, const struct bh_addr *a, uint16_t port);

struct bundle_rule {
	const char *id;	    /* "POLICY/DIRECTION/INDEX", stable across compiles */
	const char *policy; /* policy name */
	uint32_t index;	    /* rule index in the policy's list */
	enum rule_action action;
	enum policy_mode mode;
	bool any_peer;
	uint32_t *sets; /* indices into bundle.sets: the peer matches any */
	size_t n_sets;
	bool any_port;
	struct port_match *ports;
	size_t n_ports;
};

struct bundle_chain {
	struct bundle_rule *rules; /* first match decides */
	size_t n_rules;
	/* When no rule matched. */
	enum verdict fallback;
	const char *fallback_reason; /* RULE_ID_DEFAULT_DENY or RULE_ID_DEFAULTS */
};

struct bundle_endpoint {
	const char *name;
	struct bh_addr *addrs; /* as the controller knows them; sorted */
	size_t n_addrs;
	struct bundle_chain chains[DIR_COUNT];
};

struct bundle {
	struct arena *arena;
	const char *node;
	/* The document's "observe", for every endpoint of the bundle. Encoded
	 * ("observe": "all") only when OBSERVE_ALL, so a bundle of the default
	 * is byte for byte what it was before the key existed (same hash), and
	 * an agent that does not know it refuses only what it cannot honour. */
	enum observe observe;
	struct bundle_endpoint *endpoints; /* sorted by name */
	size_t n_endpoints;
	struct bundle_set *sets; /* sorted by id */
	size_t n_sets;
	/* Encoded ("named_ports") only when there are some, so a bundle
	 * without named ports is byte for byte what it was before. */
	struct bundle_named_port *named_ports; /* sorted by id */
	size_t n_named_ports;
	char hash[BUNDLE_HASH_HEX + 1];
};

void bundle_free(struct bundle *b); /* accepts NULL */

/* JSON (with "hash"); the caller owns the result. NULL on ENOMEM. */
json_t *bundle_to_json(const struct bundle *b);
/* Text: compact when pretty is false. Caller frees with free(). */
char *bundle_encode(const struct bundle *b, bool pretty);
/* Recomputes b->hash from the content: the SHA-256 of its compact JSON
 * without "hash". 0, -ENOMEM, or -EINVAL for a string that is not UTF-8
 * (which JSON cannot carry). */
BH_MUST_CHECK int bundle_update_hash(struct bundle *b);

/* Decodes and validates a bundle from an untrusted source: every field is
 * type- and range-checked, set references resolved and the hash verified.
 * NULL with the problems in diag. */
struct bundle *bundle_from_json(json_t *root, struct diag *diag);
struct bundle *bundle_decode(const char *text, size_t len, struct diag *diag);
/* b if its content hashes to claim; otherwise NULL with the problem in
 * diag, and b freed. Takes b (NULL passes through). */
struct bundle *bundle_hash_checked(struct bundle *b, const char *claim, struct diag *diag);

/* The bundle base becomes under a DELTA's "sets" list (proto.h: SET-DELTA
 * and NAMED-DELTA), as untrusted input: a set or table base lacks, or an
 * element decoding would refuse, gives NULL with the problems in diag.
 * What proto_delta_apply() then bundle_from_json() give, but its hash is
 * not yet checked: bundle_hash_checked() with the DELTA's "hash" does
 * that (hash is empty until then). base is left as it is. */
struct bundle *bundle_apply_delta(const struct bundle *base, json_t *sets, struct diag *diag);

const struct bundle_endpoint *bundle_find_endpoint(const struct bundle *b, const char *name);
