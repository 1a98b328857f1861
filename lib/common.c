/* Names of the shared enums, as they appear in JSON and on screen. */
#include "bulkhead/common.h"

const char *direction_name(enum direction dir)
{
	return dir == DIR_EGRESS ? "egress" : "ingress";
}

const char *action_name(enum rule_action action)
{
	return action == ACTION_DENY ? "deny" : "allow";
}

const char *mode_name(enum policy_mode mode)
{
	return mode == MODE_AUDIT ? "audit" : "enforce";
}

const char *verdict_name(enum verdict verdict)
{
	switch (verdict) {
	case VERDICT_DROP:
		return "drop";
	case VERDICT_AUDIT:
		return "audit";
	case VERDICT_ACCEPT:
		break;
	}
	return "accept";
}
