/* store: the controller's state in SQLite (WAL) at STATE_DIR/controller.db —
 * policy revisions, the last endpoint list each node reported, what each
 * node last acknowledged, and the denied flows (filled by the flow reports).
 * A restart resumes from it. Every write is its own transaction. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "bulkhead/common.h"

#define STORE_FILE "controller.db"

struct store;

struct store_revision {
	int64_t revision;
	int64_t time; /* unix seconds */
	char *comment;  /* NULL when none */
	char *document;
	char *sha256;   /* of the document */
};
void store_revision_release(struct store_revision *r);

/* Opens (creating the directory's database and schema when new). NULL with
 * a malloc()ed message in *err. */
struct store *store_open(const char *dir, char **err);
void store_free(struct store *s);
/* The last SQLite error message (for logging after a failed call). */
const char *store_error(struct store *s);

/* Appends a revision (time: now). 0 and *revision, or -EIO. */
BH_MUST_CHECK int store_add_revision(struct store *s, const char *document, const char *comment,
				     int64_t *revision);
/* Revision rev, or the newest when rev is 0. 0, -ENOENT, or -EIO. */
BH_MUST_CHECK int store_get_revision(struct store *s, int64_t rev, struct store_revision *out);
/* Calls fn for every revision, newest first, without the document. */
BH_MUST_CHECK int store_each_revision(struct store *s, void (*fn)(void *data, const struct store_revision *r),
				      void *data);

/* The endpoint list (JSON text) a node last reported. */
BH_MUST_CHECK int store_put_inventory(struct store *s, const char *node, const char *endpoints_json);
BH_MUST_CHECK int store_each_inventory(struct store *s,
				       void (*fn)(void *data, const char *node, const char *endpoints_json),
				       void *data);
/* Forgets the node's endpoint list (`bulkhead nodes forget`); its flows
 * stay until the retention prunes them. 0 (also when there was none) or
 * -EIO. */
BH_MUST_CHECK int store_forget_node(struct store *s, const char *node);

/* ---- denied flows ---- */

/* Stores a FLOWS batch (proto.h) of node once, in one transaction: the
 * flow objects carry the controller's names of both ends too
 * (src_endpoint, src_groups, dst_endpoint, dst_groups), the hits their
 * endpoint's groups. 1 stored, 0 stored before (a resent batch),
 * STORE_BATCH_EXPIRED when its window ended before keep_after_ms (the
 * retention: not stored), -EIO. */
#define STORE_BATCH_EXPIRED 2
BH_MUST_CHECK int store_add_flow_batch(struct store *s, const char *node, json_t *batch, int64_t keep_after_ms);
/* Deletes up to max_rows each of the flows, hits and losses older than
 * before_ms, and of the batch keys received before keys_before_ms (unix
 * ms), in one transaction; *removed: how many flow rows went. 1 when some
 * table had more to delete (call again), 0 when done, -EIO. */
BH_MUST_CHECK int store_prune_flows(struct store *s, int64_t before_ms, int64_t keys_before_ms, int64_t max_rows,
				   int64_t *removed);

enum flow_query_mode {
	FLOW_QUERY_REPORT, /* aggregated over windows, newest first */
	FLOW_QUERY_FOLLOW, /* rows after after_id, oldest first, one per window */
	FLOW_QUERY_RULES,  /* packets per deciding rule, most first */
};

struct flow_query {
	enum flow_query_mode mode;
	int64_t since_ms;    /* flows last seen at or after (unix ms) */
	const char *node;    /* NULL: every node */
	const char *group;   /* NULL: any; else either end is in it */
	const char *verdict; /* NULL, "deny", "audit" */
	int64_t limit;	     /* <= 0: no limit */
	int64_t after_id;
};

/* {"flows"|"rules": [ROW...], "lost": [{"node", "endpoint", "enobufs",
 * "gap", "spool"}...], "last_id": N}; NULL on a database error. */
json_t *store_query_flows(struct store *s, const struct flow_query *q);
