/* Bulkhead's vocabulary: directions, actions, modes, verdicts, protocols
 * and the ids of the rules no policy wrote, each enum beside its words.
 * The policy parser, the compiler, the bundle and wire codecs, the
 * evaluator, the dataplane, the flow reports and the CLI all take their
 * words from here, so each part says what the others read. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Traffic direction, seen from the endpoint that enforces it. */
enum direction {
	DIR_INGRESS = 0,
	DIR_EGRESS = 1,
	DIR_COUNT = 2,
};

enum rule_action {
	ACTION_ALLOW = 0,
	ACTION_DENY = 1,
};

enum policy_mode {
	MODE_ENFORCE = 0,
	MODE_AUDIT = 1,
};

/* What happens to a packet: accepted, dropped, or accepted and reported
 * because an audit-mode policy would have dropped it. */
enum verdict {
	VERDICT_ACCEPT = 0,
	VERDICT_DROP = 1,
	VERDICT_AUDIT = 2,
};

/* What a document asks every endpoint to report (DESIGN §2, Visibility):
 * denied and audited flows only, or every accepted new connection too. */
enum observe {
	OBSERVE_DENIED = 0,
	OBSERVE_ALL = 1,
};

/* Each list is indexed by its enum and ends with NULL, the form
 * vocab_find() and the JSON walkers take. */
extern const char *const direction_words[]; /* "ingress", "egress" */
extern const char *const action_words[];    /* "allow", "deny" */
extern const char *const mode_words[];	    /* "enforce", "audit" */
extern const char *const observe_words[];   /* "denied", "all" */
/* A verdict as bundles and the evaluator write it: "accept", "drop", "audit". */
extern const char *const verdict_words[];
/* A verdict as the reports write it, named for what the rule said: "allow",
 * "deny", "audit" (flows and hits on the wire, the controller's store and
 * queries, `bulkhead flows`). A flow record is "allow" only where the
 * policy observes every accepted connection. */
extern const char *const report_verdict_words[];

const char *direction_name(enum direction dir);	  /* "ingress" / "egress" */
const char *action_name(enum rule_action action); /* "allow" / "deny" */
const char *mode_name(enum policy_mode mode);	  /* "enforce" / "audit" */
const char *observe_name(enum observe o);	  /* "denied" / "all" */
const char *verdict_name(enum verdict verdict);	  /* "accept" / "drop" / "audit" */
const char *verdict_report_name(enum verdict v);  /* "allow" / "deny" / "audit" */

/* The verdict of a rule that matched: allow accepts; deny drops, or
 * audits in an audit-mode policy. */
enum verdict rule_verdict(enum rule_action action, enum policy_mode mode);

/* The index of s in the NULL-terminated words, or -1. */
int vocab_find(const char *const *words, const char *s);

/* ---- the rules no policy wrote ------------------------------------------
 * Their ids stand where a policy rule's id ("POLICY/DIRECTION/INDEX") would:
 * the comments of the kernel rules, the evaluator's reasons, the rule of a
 * denied flow or a hit count. None contains '/', so none is a policy
 * rule's. */

/* The rules every chain starts with (DESIGN §2 step 1), in chain order. */
enum fixed_rule {
	FIXED_ESTABLISHED,	   /* replies and related packets of accepted connections */
	FIXED_CT_INVALID,	   /* what conntrack calls invalid: dropped and reported */
	FIXED_LOOPBACK,		   /* the loopback interface */
	FIXED_NEIGHBOUR_DISCOVERY, /* ICMPv6 types 133-136 */
	/* A TCP packet that is not a SYN yet starts a connection: conntrack's
	 * mid-stream pickup (nf_conntrack_tcp_loose), which would let a cut
	 * connection come back from whichever side still may send. Dropped
	 * and reported as RULE_ID_CT_INVALID, what conntrack calls it without
	 * the pickup. */
	FIXED_TCP_PICKUP,
	FIXED_COUNT,
};

#define RULE_ID_ESTABLISHED	    "established"
#define RULE_ID_CT_INVALID	    "ct-invalid"
#define RULE_ID_LOOPBACK	    "loopback"
#define RULE_ID_NEIGHBOUR_DISCOVERY "neighbour-discovery"

/* Why a chain's fallback decided (DESIGN §2 step 3). */
#define RULE_ID_DEFAULT_DENY "default-deny" /* isolated, no rule matched */
#define RULE_ID_DEFAULTS     "defaults"	    /* not isolated: defaults.DIR */

extern const char *const fixed_rule_words[];	  /* by enum fixed_rule */
extern const char *const fallback_reason_words[]; /* RULE_ID_DEFAULT_DENY, RULE_ID_DEFAULTS */

const char *fixed_rule_id(enum fixed_rule rule);
/* The fixed rule whose id is id, or FIXED_COUNT. */
enum fixed_rule fixed_rule_find(const char *id);

/* ---- protocols ------------------------------------------------------------
 * Those a policy names ("tcp", "udp", "sctp", "icmp", "icmpv6"). */
const char *proto_name(uint8_t proto); /* NULL for any other */
/* The first len bytes of name as one of them: true and *proto, or false. */
bool proto_lookup(const char *name, size_t len, uint8_t *proto);
