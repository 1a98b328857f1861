/* The policy model of DESIGN §2: a parsed, validated policy document.
 *
 * Everything here is plain data owned by the document's arena; the structs
 * are public because the compiler and the tools walk them. Build one only
 * with policy_parse_*(), which validates every rule of the language. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "bulkhead/addr.h"
#include "bulkhead/common.h"
#include "bulkhead/diag.h"

#define POLICY_VERSION	     1
#define POLICY_DEFAULT_ORDER 1000
#define NAME_MAX_LEN	     63 /* group and policy names: [A-Za-z0-9._-]{1,63} */
/* Where a document is too big to enforce, not only to read: one group's
 * "cidrs", and its "except", hold at most this many entries (the group is
 * one set in every bundle that names it, and a bundle must fit in one
 * message, PROTO_MAX_MSG) ... */
#define POLICY_MAX_NETWORK_ENTRIES 100000
/* ... and a document is at most this many bytes, read (policy_read_file)
 * or given. */
#define POLICY_MAX_BYTES (64 << 20)

struct label {
	const char *key, *value;
};

/* Sorted by key, keys unique. */
struct label_set {
	struct label *v;
	size_t n;
};

enum selector_op {
	SELECTOR_IN,
	SELECTOR_NOT_IN,
	SELECTOR_EXISTS,
	SELECTOR_DOES_NOT_EXIST,
};

struct selector_expr {
	const char *key;
	enum selector_op op;
	const char **values; /* sorted, unique; empty for (Does)Exists */
	size_t n_values;
};

/* Kubernetes label selector: every label must be equal and every
 * expression must hold. The empty selector matches every endpoint. */
struct selector {
	struct label_set labels;
	struct selector_expr *exprs;
	size_t n_exprs;
};

enum group_kind {
	GROUP_LABEL,   /* endpoints chosen by a selector */
	GROUP_NETWORK, /* addresses: cidrs minus except */
};

struct policy_group {
	const char *name; /* NULL for an inline group */
	/* Stable identity, also the bundle's set id: the name of a named
	 * group, "POLICY/DIRECTION/RULE/PEER" for an inline peer. */
	const char *id;
	enum group_kind kind;
	struct selector selector; /* GROUP_LABEL */
	struct range_list v4, v6; /* GROUP_NETWORK: normalized */
};

/* A protocol with optional port range or ICMP type/code. */
struct port_match {
	uint8_t proto;	   /* IPPROTO_TCP, _UDP, _SCTP, _ICMP, _ICMPV6 */
	uint16_t lo, hi;   /* TCP/UDP/SCTP destination ports, 0..65535 = all */
	int16_t icmp_type; /* -1 = any */
	int16_t icmp_code; /* -1 = any */
	/* A named port (DESIGN §2 "Named ports"): "tcp/http" gives proto and
	 * name, lo/hi unused. NULL for a number. In a bundle, ingress names
	 * are already resolved to numbers by the compiler and only egress
	 * rules carry names; named_table is then the index of the rule's
	 * bundle_named_port (bundle.h), unused elsewhere. */
	const char *name;
	uint32_t named_table;
};

struct policy_rule {
	enum rule_action action;
	bool any_peer;		     /* no "from"/"to": any address */
	struct policy_group **peers; /* borrowed from the document */
	size_t n_peers;
	bool any_port; /* no "ports": every protocol */
	struct port_match *ports;
	size_t n_ports;
};

struct rule_list {
	bool present; /* the policy has this direction's list (maybe empty) */
	struct policy_rule *v;
	size_t n;
};

struct policy {
	const char *name;
	struct policy_group *applies_to; /* a label group */
	int32_t order;
	enum policy_mode mode;
	struct rule_list rules[DIR_COUNT];
};

struct policy_doc {
	struct arena *arena;
	int version;
	enum rule_action defaults[DIR_COUNT];
	enum observe observe;	      /* "observe", default OBSERVE_DENIED */
	struct policy_group **groups; /* named groups, sorted by name */
	size_t n_groups;
	/* Evaluation order: ascending order, ties by name. */
	struct policy *policies;
	size_t n_policies;
};

/* A policy file read whole (a regular file of at most POLICY_MAX_BYTES,
 * fileio.h) into *text: malloc()ed, NUL-terminated, the caller's. 0, or a
 * negative errno with the reason recorded in diag. */
BH_MUST_CHECK int policy_read_file(const char *path, char **text, size_t *len, struct diag *diag);
/* Parse and validate. On failure returns NULL and records every error in
 * diag (whose file name prefixes each). The caller owns the result. A text
 * or file of more than POLICY_MAX_BYTES is refused unread. */
struct policy_doc *policy_parse_file(const char *path, struct diag *diag);
struct policy_doc *policy_parse_json(json_t *root, struct diag *diag);
struct policy_doc *policy_parse_string(const char *text, size_t len, struct diag *diag);
void policy_doc_free(struct policy_doc *doc);

const struct policy_group *policy_find_group(const struct policy_doc *doc, const char *name);

/* Kubernetes label syntax (DNS prefix allowed on keys). */
bool label_key_valid(const char *key, const char **why);
bool label_value_valid(const char *value, const char **why);

bool selector_matches(const struct selector *sel, const struct label_set *labels);
const char *label_set_get(const struct label_set *labels, const char *key);

/* "tcp/80", "tcp/8000-8100", "icmp/8/0", "udp", "tcp/http": 0 or -EINVAL
 * with *why set to a message. For a named port, out->name points into s
 * (copy it if s does not outlive out) and lo = hi = 0. */
BH_MUST_CHECK int port_match_parse(const char *s, struct port_match *out, const char **why);
void port_match_format(const struct port_match *p, char *buf, size_t size);

/* Named ports (DESIGN §2): a name in Kubernetes' IANA_SVC_NAME syntax
 * (1-15 of a-z 0-9 '-', a letter among them, no '-' at either end nor
 * "--"), and what it stands for, "tcp/8080", "udp/53" or "sctp/N". */
bool named_port_name_valid(const char *name, const char **why);
BH_MUST_CHECK int named_port_parse(const char *s, uint8_t *proto, uint16_t *port, const char **why);
