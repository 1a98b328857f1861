/* store: the controller's state in SQLite (WAL) at STATE_DIR/controller.db —
 * policy revisions, the last endpoint list each node reported, what each
 * node last acknowledged, and the denied flows (filled by the flow reports).
 * A restart resumes from it. Every write is its own transaction. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "bulkhead/common.h"
#include "bulkhead/loop.h"
#include "bulkhead/worker.h"

#define STORE_FILE "controller.db"

struct store;

struct store_revision {
	int64_t revision;
	int64_t time;  /* unix seconds */
	char *comment; /* NULL when none */
	char *document;
	char *sha256; /* of the document */
};
void store_revision_release(struct store_revision *r);

/* Opens (creating the directory's database and schema when new). NULL with
 * a malloc()ed message in *err. */
struct store *store_open(const char *dir, char **err);
void store_free(struct store *s);

/* A second, read-only connection to s's database, for another thread
 * (flow queries off the loop): WAL lets it read while s writes. NULL with
 * *err (malloc()ed). */
struct store *store_open_reader(struct store *s, char **err);
/* Stops the query running on s, from any thread: it fails (-ETIMEDOUT).
 * For good: s is being closed. */
void store_interrupt(struct store *s);

/* From now on s never checkpoints its WAL as it commits (a checkpoint
 * writes the database and fsyncs it, inside the loop); a connection of
 * its own does, every second on worker w, waiting for nobody. w must be
 * freed before s. 0, or -errno with *err (malloc()ed). */
BH_MUST_CHECK int store_checkpoint_off_loop(struct store *s, struct loop *l, struct worker *w, char **err);
/* What went wrong first in the last failed call (for logging after it). */
const char *store_error(struct store *s);

/* Appends a revision (time: now). 0 and *revision, or -EIO. */
BH_MUST_CHECK int store_add_revision(struct store *s, const char *document, const char *comment,
				     int64_t *revision);
/* Revision rev, or the newest when rev is 0. 0, -ENOENT, or -EIO. */
BH_MUST_CHECK int store_get_revision(struct store *s, int64_t rev, struct store_revision *out);
/* The SHA-256 (hex) of revision rev's document. 0, -ENOENT, or -EIO. */
BH_MUST_CHECK int store_revision_sha256(struct store *s, int64_t rev, char out[65]);
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

/* Why the controller did not store all a node sent (or stored it
 * otherwise): the "reason" of the flow query's "dropped" entries. */
enum store_drop {
	STORE_DROP_RATE,     /* "rate": over the node's rate limit */
	STORE_DROP_QUOTA,    /* "quota": over the node's quota of stored records */
	STORE_DROP_REJECTED, /* "rejected": a malformed batch, refused whole */
	STORE_DROP_EXPIRED,  /* "expired": a batch older than the retention (a clock behind) */
	STORE_DROP_FUTURE,   /* "future": records dated ahead, stored at the controller's time */
	STORE_DROP_FOREIGN,  /* "foreign": records of an endpoint the node did not report */
	STORE_DROP_COUNT,
};
const char *store_drop_name(enum store_drop d);

struct store_drop_count {
	int64_t batches, records, packets; /* records: flow and hit rows; packets: the flows' */
};
struct store_drops {
	struct store_drop_count v[STORE_DROP_COUNT];
};

/* Whether batch (epoch, seq) of node was stored before: 1, 0, or -EIO. */
BH_MUST_CHECK int store_flow_batch_seen(struct store *s, const char *node, int64_t epoch, int64_t seq);
/* The flow and hit records stored for node (its quota's use). 0 or -EIO. */
BH_MUST_CHECK int store_flow_records(struct store *s, const char *node, int64_t *records);

/* Stores a FLOWS batch (proto.h) of node once, in one transaction, with
 * what the controller did not store of it (drops; may be all zero): the
 * flow objects carry the controller's names of both ends too
 * (src_endpoint, src_groups, dst_endpoint, dst_groups), the hits their
 * endpoint's groups. Losses and drops are added to the node's row of the
 * minute of now_ms. 1 stored, 0 stored before (a resent batch: nothing is
 * added), -EIO. */
BH_MUST_CHECK int store_add_flow_batch(struct store *s, const char *node, json_t *batch,
				       const struct store_drops *drops, int64_t now_ms);
/* Adds drops alone (a batch not stored at all: not even its key, which
 * the rate did not leave room for), to the node's row of the minute of
 * now_ms. 0 or -EIO. */
BH_MUST_CHECK int store_add_flow_drops(struct store *s, const char *node, const struct store_drops *drops,
				       int64_t now_ms);
/* Deletes up to max_rows each of the flows, hits, losses and drops older
 * than before_ms, and of the batch keys received before keys_before_ms
 * (unix ms), in one transaction; *removed: how many flow rows went. 1 when
 * some table had more to delete (call again), 0 when done, -EIO. */
BH_MUST_CHECK int store_prune_flows(struct store *s, int64_t before_ms, int64_t keys_before_ms,
				    int64_t max_rows, int64_t *removed);

enum flow_query_mode {
	FLOW_QUERY_REPORT, /* aggregated over windows, newest first */
	FLOW_QUERY_FOLLOW, /* rows after after_id, oldest first, one per window */
	FLOW_QUERY_RULES,  /* packets per deciding rule, most first */
	FLOW_QUERY_GROUPS, /* packets per (source groups, destination groups, verdict), most first */
};

/* What stands for an end in no group, where a group name is expected
 * (the group map, and the src_group / dst_group filters): an endpoint in
 * no label group, an outside address in no network group. Neither can be
 * a group's name. */
#define FLOW_GROUP_UNGROUPED "(ungrouped)"
#define FLOW_GROUP_OUTSIDE   "(outside)"

/* A protocol and port filter: the flows to a destination port in lo..hi
 * (of proto, or of any protocol when proto is NULL), or of an ICMP type
 * and code (-1: any). */
struct flow_port {
	bool set;
	const char *proto; /* "tcp", "udp", "sctp", "icmp", "icmpv6"; NULL: any */
	uint16_t lo, hi;
	int icmp_type, icmp_code;
};

struct flow_query {
	enum flow_query_mode mode;
	int64_t since_ms;    /* flows last seen at or after (unix ms) */
	const char *node;    /* NULL: every node */
	const char *group;   /* NULL: any; else either end is in it */
	const char *verdict; /* NULL: any (but see blocked_only), "deny", "audit", "allow" */
	bool blocked_only;   /* with verdict NULL: deny and audit only (the blocked-flow report) */
	int64_t limit;	     /* <= 0: no limit */
	int64_t after_id;
	/* Flows only (not the rules' kernel hits, which have neither ends
	 * nor ports): the source's and the destination's group (a name, or
	 * FLOW_GROUP_*), and the port. */
	const char *src_group, *dst_group;
	struct flow_port port;
};

/* How long one flow query on s may run (ms; 0: no limit). */
void store_set_query_limit(struct store *s, int64_t ms);
/* *out = {"flows"|"rules"|"groups": [ROW...], "lost": [{"node", "endpoint",
 * "enobufs", "gap", "spool"}...], "dropped": [{"node", "reason",
 * "batches", "records", "packets"}...], "last_id": N}. Every sum stops at
 * 2^53. A "groups" ROW: {"src_groups", "src_outside": 0|1, "dst_groups",
 * "dst_outside", "verdict", "count", "pairs" (distinct source and
 * destination addresses), "last"}; *_outside: the end is no endpoint. 0, -ETIMEDOUT when the query ran past
 * its limit and was stopped, or -EIO. */
BH_MUST_CHECK int store_query_flows(struct store *s, const struct flow_query *q, json_t **out);
