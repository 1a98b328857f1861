/* Bounded exponential backoff of one endpoint (see backoff.h). */
#include <stddef.h>

#include "backoff.h"

uint64_t backoff_fail(struct backoff *b, enum backoff_reason why, uint64_t now)
{
	if (b->reason != why || (why == BACKOFF_TAMPERING && backoff_quiet(b, now)))
		*b = (struct backoff){.reason = why};
	b->streak++;
	if (why == BACKOFF_TAMPERING && b->streak == 1)
		b->delay_ms = 0; /* the first change is put back at once */
	else if (b->delay_ms == 0)
		b->delay_ms = BACKOFF_MIN_MS;
	else
		b->delay_ms = b->delay_ms >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS : b->delay_ms * 2;
	b->next_ms = now + b->delay_ms;
	b->last_ms = now;
	return b->delay_ms;
}

bool backoff_due(const struct backoff *b, uint64_t now)
{
	return b->reason == BACKOFF_NONE || now >= b->next_ms;
}

void backoff_repaired(struct backoff *b, uint64_t now)
{
	if (b->reason == BACKOFF_TAMPERING)
		b->last_ms = now;
}

bool backoff_quiet(const struct backoff *b, uint64_t now)
{
	return b->reason == BACKOFF_TAMPERING && now - b->last_ms >= BACKOFF_QUIET_MS;
}

bool backoff_reset(struct backoff *b)
{
	bool was = b->reason != BACKOFF_NONE && b->delay_ms > 0;
	*b = (struct backoff){0};
	return was;
}

const char *backoff_reason_name(enum backoff_reason why)
{
	switch (why) {
	case BACKOFF_OPEN:
		return "open";
	case BACKOFF_APPLY:
		return "apply";
	case BACKOFF_TAMPERING:
		return "tampering";
	case BACKOFF_NONE:
		break;
	}
	return NULL;
}
