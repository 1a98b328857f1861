/* Names of the shared enums, as they appear in JSON and on screen; clocks. */
#include <time.h>

#include "bulkhead/common.h"

static int64_t clock_ms(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_wall_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

int64_t clock_mono_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

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
