/* The words of the shared enums, the fixed rule ids and the protocol
 * names (vocab.h): one table each, looked up both ways. */
#include <netinet/in.h>
#include <string.h>

#include "bulkhead/vocab.h"

const char *const direction_words[] = {[DIR_INGRESS] = "ingress", [DIR_EGRESS] = "egress", NULL};
const char *const action_words[] = {[ACTION_ALLOW] = "allow", [ACTION_DENY] = "deny", NULL};
const char *const mode_words[] = {[MODE_ENFORCE] = "enforce", [MODE_AUDIT] = "audit", NULL};
const char *const observe_words[] = {[OBSERVE_DENIED] = "denied", [OBSERVE_ALL] = "all", NULL};
const char *const verdict_words[] = {
    [VERDICT_ACCEPT] = "accept", [VERDICT_DROP] = "drop", [VERDICT_AUDIT] = "audit", NULL};
const char *const report_verdict_words[] = {
    [VERDICT_ACCEPT] = "allow", [VERDICT_DROP] = "deny", [VERDICT_AUDIT] = "audit", NULL};

const char *const fixed_rule_words[] = {
    [FIXED_ESTABLISHED] = RULE_ID_ESTABLISHED,
    [FIXED_CT_INVALID] = RULE_ID_CT_INVALID,
    [FIXED_LOOPBACK] = RULE_ID_LOOPBACK,
    [FIXED_NEIGHBOUR_DISCOVERY] = RULE_ID_NEIGHBOUR_DISCOVERY,
    [FIXED_TCP_PICKUP] = RULE_ID_CT_INVALID, /* found as FIXED_CT_INVALID: both report so */
    NULL,
};
const char *const fallback_reason_words[] = {RULE_ID_DEFAULT_DENY, RULE_ID_DEFAULTS, NULL};

/* An enum's word; out-of-range values read as the first (the default). */
static const char *word(const char *const *words, size_t n, unsigned v)
{
	return v < n ? words[v] : words[0];
}

const char *direction_name(enum direction dir)
{
	return word(direction_words, DIR_COUNT, dir);
}

const char *action_name(enum rule_action action)
{
	return word(action_words, 2, action);
}

const char *mode_name(enum policy_mode mode)
{
	return word(mode_words, 2, mode);
}

const char *observe_name(enum observe o)
{
	return word(observe_words, 2, o);
}

const char *verdict_name(enum verdict verdict)
{
	return word(verdict_words, 3, verdict);
}

const char *verdict_report_name(enum verdict v)
{
	return word(report_verdict_words, 3, v);
}

enum verdict rule_verdict(enum rule_action action, enum policy_mode mode)
{
	if (action == ACTION_ALLOW)
		return VERDICT_ACCEPT;
	return mode == MODE_AUDIT ? VERDICT_AUDIT : VERDICT_DROP;
}

int vocab_find(const char *const *words, const char *s)
{
	for (int i = 0; s && words[i]; i++) {
		if (strcmp(words[i], s) == 0)
			return i;
	}
	return -1;
}

const char *fixed_rule_id(enum fixed_rule rule)
{
	return rule < FIXED_COUNT ? fixed_rule_words[rule] : NULL;
}

enum fixed_rule fixed_rule_find(const char *id)
{
	int i = vocab_find(fixed_rule_words, id);

	return i < 0 ? FIXED_COUNT : (enum fixed_rule)i;
}

static const struct {
	const char *name;
	uint8_t proto;
} protocols[] = {
    {"tcp", IPPROTO_TCP},   {"udp", IPPROTO_UDP},	{"sctp", IPPROTO_SCTP},
    {"icmp", IPPROTO_ICMP}, {"icmpv6", IPPROTO_ICMPV6},
};

const char *proto_name(uint8_t proto)
{
	for (size_t i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++) {
		if (protocols[i].proto == proto)
			return protocols[i].name;
	}
	return NULL;
}

bool proto_lookup(const char *name, size_t len, uint8_t *proto)
{
	for (size_t i = 0; name && i < sizeof(protocols) / sizeof(protocols[0]); i++) {
		if (strlen(protocols[i].name) == len && strncmp(protocols[i].name, name, len) == 0) {
			*proto = protocols[i].proto;
			return true;
		}
	}
	return false;
}
