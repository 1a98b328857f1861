/* Bundle or delta per node (see push.h). */
#include <stdio.h>
#include <string.h>

#include "push.h"

static void clear_inflight(struct node *n)
{
	json_decref(n->inflight_bundle);
	n->inflight_bundle = NULL;
	n->inflight_revision = 0;
	n->inflight_hash[0] = '\0';
}

static void set_held(struct node *n, json_t *revision, json_t *hash)
{
	n->held_revision = json_is_integer(revision) ? json_integer_value(revision) : 0;
	snprintf(n->held_hash, sizeof(n->held_hash), "%s",
		 json_is_string(hash) ? json_string_value(hash) : "");
	json_decref(n->held_bundle);
	n->held_bundle = NULL;
}

void push_hello(struct node *n, json_t *revision, json_t *hash, json_t *want, const char *want_hash)
{
	set_held(n, revision, hash);
	clear_inflight(n);
	if (want && strcmp(want_hash, n->held_hash) == 0)
		n->held_bundle = json_incref(want);
}

void push_acked(struct node *n, json_t *revision, json_t *hash)
{
	set_held(n, revision, hash);
	if (n->inflight_bundle && strcmp(n->inflight_hash, n->held_hash) == 0)
		n->held_bundle = json_incref(n->inflight_bundle);
	clear_inflight(n);
}

void push_lost(struct node *n)
{
	clear_inflight(n);
}

bool push_overdue(const struct node *n, int64_t now_ms)
{
	return n->inflight_revision && now_ms - n->inflight_since_ms >= PUSH_INFLIGHT_TIMEOUT_MS;
}

int push_next(const struct node *n, json_t *want, const char *hash, int64_t revision, int64_t now_ms,
	      json_t **body, size_t *n_sets)
{
	if (n->inflight_revision == revision && strcmp(n->inflight_hash, hash) == 0 &&
	    !push_overdue(n, now_ms))
		return -1; /* on its way */
	if (n->held_revision == revision && strcmp(n->held_hash, hash) == 0)
		return -1;
	json_t *sets = NULL;
	if (strcmp(n->held_hash, hash) == 0)
		sets = json_array();
	else if (n->held_bundle)
		sets = proto_delta_make(n->held_bundle, want);
	if (sets) {
		*n_sets = json_array_size(sets);
		*body = json_pack("{s:I,s:s,s:s,s:o}", "revision", (json_int_t)revision, "base", n->held_hash,
				  "hash", hash, "sets", sets);
		return PROTO_DELTA;
	}
	*n_sets = 0;
	*body = json_pack("{s:I,s:O}", "revision", (json_int_t)revision, "bundle", want);
	return PROTO_BUNDLE;
}

void push_sent(struct node *n, bool sent, json_t *want, const char *hash, int64_t revision, int64_t now_ms)
{
	clear_inflight(n);
	if (!sent)
		return;
	n->inflight_revision = revision;
	n->inflight_since_ms = now_ms;
	snprintf(n->inflight_hash, sizeof(n->inflight_hash), "%s", hash);
	n->inflight_bundle = json_incref(want);
}
