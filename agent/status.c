/* status.json (see status.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/log.h"
#include "state.h"
#include "status.h"

/* The flow counters change with every packet: status.json follows them at
 * most once a second, when nothing else made it due sooner. */
#define STATUS_FLOWS_MS 1000

struct status {
	char *dir;
	bool dirty;
	json_t *flows_written; /* the flow counters the file holds */
	uint64_t flows_written_ms;
};

struct status *status_new(const char *dir)
{
	struct status *st = xcalloc(1, sizeof(*st));
	st->dir = dir ? xstrdup(dir) : NULL;
	st->dirty = true;
	return st;
}

void status_free(struct status *st)
{
	if (!st)
		return;
	json_decref(st->flows_written);
	free(st->dir);
	free(st);
}

void status_touch(struct status *st)
{
	st->dirty = true;
}

bool status_due(struct status *st, const json_t *flows, uint64_t now_ms)
{
	if (!st->dir)
		return false;
	if (!st->dirty && flows && !json_equal((json_t *)flows, st->flows_written) &&
	    now_ms - st->flows_written_ms >= STATUS_FLOWS_MS)
		st->dirty = true;
	return st->dirty;
}

void status_write(struct status *st, struct status_facts *f, json_t *flows, uint64_t now_ms)
{
	json_t *o = json_pack(
	    "{s:s,s:s?,s:I,s:o,s:s,s:o,s:{s:I,s:I}}", "node", f->node, "bundle", f->bundle, "revision",
	    (json_int_t)f->revision, "controller", f->controller ? f->controller : json_null(), "dataplane",
	    f->dataplane, "endpoints", f->endpoints, "rejected", "bundles", (json_int_t)f->bundles_rejected,
	    "inventories", (json_int_t)f->inventories_rejected);
	if (!o)
		abort();
	if (f->cache)
		json_object_set_new(o, "cache", f->cache);
	if (f->sources)
		json_object_set_new(o, "sources", f->sources);
	if (f->refused)
		json_object_set_new(o, "refused", f->refused);
	if (flows) {
		json_object_set(o, "flows", flows);
		json_decref(st->flows_written);
		st->flows_written = flows; /* the reference flows held */
		st->flows_written_ms = now_ms;
	}
	char *text = json_dumps(o, JSON_INDENT(2));
	json_decref(o);
	if (!text)
		abort();
	int r = st->dir ? state_write_nosync(st->dir, STATE_STATUS, text, strlen(text)) : 0;
	if (r < 0)
		log_error_errno(r, "writing %s/%s: %m", st->dir, STATE_STATUS);
	free(text);
	st->dirty = false;
}
