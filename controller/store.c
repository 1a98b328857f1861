/* The controller's SQLite state (see store.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <stdatomic.h>

#include <sqlite3.h>

#include "bulkhead/log.h"

#include "bulkhead/proto.h"
#include "bulkhead/sha256.h"
#include "store.h"

struct store {
	sqlite3 *db;
	char *path; /* the database file */
	/* The first error of the last failed call: what SQLite says after a
	 * ROLLBACK or a finalize is about those, not about the failure. */
	char error[512];
	int64_t query_ms;    /* how long a flow query may run; 0: no limit */
	int64_t deadline_ms; /* monotonic: the running query's end */
	atomic_bool stop;    /* store_interrupt(): the running query ends */
	/* Checkpoints off the loop (store_checkpoint_off_loop). */
	struct store *checkpointer; /* a connection of the worker's */
	struct loop *loop;
	struct worker *worker;
	struct loop_source *checkpoint_timer;
	bool checkpoint_queued;
};

/* How often the WAL is copied into the database, off the loop. */
#define CHECKPOINT_MS 1000

/* What one stored row may count (the wire schema's range, proto.h), and
 * where every sum stops (2^53, exact in a double and in JSON): no sum can
 * overflow whatever is stored, also rows of older versions that had no
 * range. */
#define COUNT_MAX "1099511627776"
#define SUM_MAX	  "9007199254740992"
#define SUM(x)	  "CAST(MIN(TOTAL(" x "), " SUM_MAX ") AS INTEGER)"
_Static_assert(PROTO_FLOWS_COUNT_MAX == INT64_C(1099511627776), "COUNT_MAX is the wire schema's range");

/* Losses and drops are added up per node, endpoint (or reason) and minute
 * of the controller's clock, in one row each, dated the minute's end: their
 * rows stay few whatever a node sends. */
#define MERGE_MS 60000

/* Schema version 2 added the flow reports; version 1's flows tables were
 * placeholders that nothing ever filled, so they are replaced. Version 3
 * added rule_hits; version 4 what the controller did not store (flow_drops)
 * and each node's stored records (flow_usage, for its quota). */
#define SCHEMA_VERSION 4
static const char schema[] = "PRAGMA journal_mode=WAL;"
			     "PRAGMA synchronous=NORMAL;"
			     "CREATE TABLE IF NOT EXISTS revisions ("
			     "  revision INTEGER PRIMARY KEY AUTOINCREMENT,"
			     "  time INTEGER NOT NULL,"
			     "  comment TEXT,"
			     "  document TEXT NOT NULL,"
			     "  sha256 TEXT NOT NULL);"
			     "CREATE TABLE IF NOT EXISTS inventory ("
			     "  node TEXT PRIMARY KEY,"
			     "  time INTEGER NOT NULL,"
			     "  endpoints TEXT NOT NULL);";
static const char schema_v1_flows_drop[] = "DROP TABLE IF EXISTS flows; DROP TABLE IF EXISTS flow_batches;";
/* Times in unix milliseconds. A flow row is one window's aggregate; both
 * ends are named as the controller knew them when the batch arrived:
 * *_endpoint "NODE/NAME" or NULL, *_groups the label groups (of an
 * endpoint) or network groups (of an outside address), comma-separated. */
static const char schema_flows[] =
    "CREATE TABLE IF NOT EXISTS flow_batches ("
    "  node TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL,"
    "  received INTEGER NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,"
    "  PRIMARY KEY (node, epoch, seq));"
    "CREATE TABLE IF NOT EXISTS flows ("
    "  id INTEGER PRIMARY KEY, node TEXT NOT NULL, endpoint TEXT NOT NULL, direction TEXT NOT NULL,"
    "  first INTEGER NOT NULL, last INTEGER NOT NULL,"
    "  src TEXT NOT NULL, src_endpoint TEXT, src_groups TEXT NOT NULL,"
    "  dst TEXT NOT NULL, dst_endpoint TEXT, dst_groups TEXT NOT NULL,"
    "  proto TEXT NOT NULL, port INTEGER, icmp_type INTEGER, icmp_code INTEGER,"
    "  verdict TEXT NOT NULL, policy TEXT, rule TEXT NOT NULL, count INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS flows_by_last ON flows (last);"
    "CREATE INDEX IF NOT EXISTS flows_by_node ON flows (node, last);"
    /* What the agents could not report (their own counts), per minute. */
    "CREATE TABLE IF NOT EXISTS flow_losses ("
    "  id INTEGER PRIMARY KEY, node TEXT NOT NULL, endpoint TEXT, time INTEGER NOT NULL,"
    "  enobufs INTEGER NOT NULL, gap INTEGER NOT NULL, spool INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS flow_losses_by_node ON flow_losses (node, time);"
    /* What the controller did not store of what a node sent, and why
     * (store_drop_name), per minute. */
    "CREATE TABLE IF NOT EXISTS flow_drops ("
    "  id INTEGER PRIMARY KEY, node TEXT NOT NULL, time INTEGER NOT NULL, reason TEXT NOT NULL,"
    "  batches INTEGER NOT NULL, records INTEGER NOT NULL, packets INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS flow_drops_by_node ON flow_drops (node, time);"
    "CREATE INDEX IF NOT EXISTS flow_drops_by_time ON flow_drops (time);"
    /* Flow and hit rows stored per node: its quota. */
    "CREATE TABLE IF NOT EXISTS flow_usage (node TEXT PRIMARY KEY, records INTEGER NOT NULL);"
    /* What each rule counted in the kernel, per batch: groups are the
     * endpoint's label groups; time is the end of the batch's window. */
    "CREATE TABLE IF NOT EXISTS rule_hits ("
    "  id INTEGER PRIMARY KEY, node TEXT NOT NULL, endpoint TEXT NOT NULL, groups TEXT NOT NULL,"
    "  direction TEXT NOT NULL, policy TEXT, rule TEXT NOT NULL, verdict TEXT NOT NULL,"
    "  time INTEGER NOT NULL, packets INTEGER NOT NULL, bytes INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS rule_hits_by_time ON rule_hits (time);"
    /* For the retention's pruning. */
    "CREATE INDEX IF NOT EXISTS flow_batches_by_received ON flow_batches (received);"
    "CREATE INDEX IF NOT EXISTS flow_losses_by_time ON flow_losses (time);";
/* Before version 4 nothing counted each node's rows. */
static const char schema_v4_usage[] =
    "INSERT OR REPLACE INTO flow_usage (node, records) SELECT node, SUM(n) FROM ("
    " SELECT node, COUNT(*) AS n FROM flows GROUP BY node"
    " UNION ALL SELECT node, COUNT(*) FROM rule_hits GROUP BY node) GROUP BY node;";

void store_revision_release(struct store_revision *r)
{
	free(r->comment);
	free(r->document);
	free(r->sha256);
	memset(r, 0, sizeof(*r));
}

static char *dup_or_null(const unsigned char *s)
{
	if (!s)
		return NULL;
	char *d = strdup((const char *)s);
	if (!d)
		abort();
	return d;
}

/* Remembers SQLite's message for the call that just failed. */
static void note_error(struct store *s)
{
	snprintf(s->error, sizeof(s->error), "%s", sqlite3_errmsg(s->db));
}

/* Undoes an open transaction; SQLite may have ended it already (a full
 * disk does), and then there is nothing to undo. Its own error is not the
 * one to report. */
static void rollback(struct store *s)
{
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

static int exec(struct store *s, const char *sql)
{
	if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK)
		return 0;
	note_error(s);
	return -EIO;
}

static sqlite3_stmt *prepare(struct store *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		note_error(s);
		return NULL;
	}
	return st;
}

/* sqlite3_step, noting an error (anything but a row or the end). */
static int step(struct store *s, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		note_error(s);
	return rc;
}

static int schema_upgrade(struct store *s)
{
	sqlite3_stmt *st = prepare(s, "PRAGMA user_version");
	if (!st)
		return -EIO;
	int version = 0;
	if (step(s, st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	/* One transaction: a crash halfway leaves the old version whole. */
	if (exec(s, "BEGIN IMMEDIATE") < 0)
		return -EIO;
	if ((version < 2 && exec(s, schema_v1_flows_drop) < 0) || exec(s, schema_flows) < 0 ||
	    (version < 4 && exec(s, schema_v4_usage) < 0))
		goto fail;
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", SCHEMA_VERSION);
	if (exec(s, sql) < 0 || exec(s, "COMMIT") < 0)
		goto fail;
	return 0;
fail:
	rollback(s);
	return -EIO;
}

/* A connection to path (flags: sqlite3_open_v2's). NULL with *err. */
static struct store *connect_to(const char *path, int flags, char **err)
{
	struct store *s = xcalloc(1, sizeof(*s));
	s->path = xstrdup(path);
	int rc = sqlite3_open_v2(path, &s->db, flags, NULL);
	if (rc != SQLITE_OK)
		snprintf(s->error, sizeof(s->error), "%s",
			 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
	if (rc != SQLITE_OK || sqlite3_busy_timeout(s->db, 5000) != SQLITE_OK) {
		if (asprintf(err, "%s: %s", path, s->error) < 0)
			*err = NULL;
		store_free(s);
		return NULL;
	}
	return s;
}

struct store *store_open(const char *dir, char **err)
{
	char path[4096];
	*err = NULL;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		if (asprintf(err, "creating %s: %s", dir, strerror(errno)) < 0)
			*err = NULL;
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, STORE_FILE);
	struct store *s = connect_to(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err);
	if (s && (exec(s, schema) < 0 || schema_upgrade(s) < 0)) {
		if (asprintf(err, "%s: %s", path, s->error) < 0)
			*err = NULL;
		store_free(s);
		return NULL;
	}
	return s;
}

struct store *store_open_reader(struct store *s, char **err)
{
	*err = NULL;
	return connect_to(s->path, SQLITE_OPEN_READONLY, err);
}

void store_interrupt(struct store *s)
{
	atomic_store(&s->stop, true);
	sqlite3_interrupt(s->db);
}

/* ---- checkpoints off the loop ---- */

struct checkpoint_job {
	struct worker_job job;
	struct store *s;
	int rc;
	char error[256];
};

static void checkpoint_run(struct worker_job *j)
{
	struct checkpoint_job *c = (struct checkpoint_job *)j;
	sqlite3 *db = c->s->checkpointer->db;
	/* PASSIVE: copies what no reader still needs, waits for nobody and
	 * holds no lock a writer needs; what is left goes next time. */
	c->rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	if (c->rc != SQLITE_OK)
		snprintf(c->error, sizeof(c->error), "%s", sqlite3_errmsg(db));
}

static void checkpoint_done(struct worker_job *j, bool cancelled)
{
	struct checkpoint_job *c = (struct checkpoint_job *)j;
	if (!cancelled) {
		c->s->checkpoint_queued = false;
		if (c->rc != SQLITE_OK && c->rc != SQLITE_BUSY)
			log_warn("checkpoint of %s: %s", c->s->path, c->error);
	}
	free(c);
}

static void on_checkpoint_timer(void *data, uint32_t events)
{
	struct store *s = data;
	if (s->checkpoint_queued)
		return;
	struct checkpoint_job *c = xcalloc(1, sizeof(*c));
	c->job.run = checkpoint_run;
	c->job.done = checkpoint_done;
	c->s = s;
	s->checkpoint_queued = true;
	worker_submit(s->worker, &c->job);
}

int store_checkpoint_off_loop(struct store *s, struct loop *l, struct worker *w, char **err)
{
	s->checkpointer = connect_to(s->path, SQLITE_OPEN_READWRITE, err);
	if (!s->checkpointer)
		return -EIO;
	s->loop = l;
	s->worker = w;
	if (!(s->checkpoint_timer = loop_add_timer(l, CHECKPOINT_MS, on_checkpoint_timer, s))) {
		if (asprintf(err, "%s: a timer: %s", s->path, strerror(errno)) < 0)
			*err = NULL;
		return -errno;
	}
	/* This connection no longer checkpoints as it commits. */
	sqlite3_wal_autocheckpoint(s->db, 0);
	return 0;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	if (s->loop)
		loop_remove(s->loop, s->checkpoint_timer);
	store_free(s->checkpointer);
	sqlite3_close(s->db);
	free(s->path);
	free(s);
}

const char *store_error(struct store *s)
{
	return s->error[0] ? s->error : "unknown error";
}

int store_add_revision(struct store *s, const char *document, const char *comment, int64_t *revision)
{
	char hex[65];
	sha256_hex(document, strlen(document), hex);
	sqlite3_stmt *st =
	    prepare(s, "INSERT INTO revisions (time, comment, document, sha256) VALUES (?,?,?,?)");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, (int64_t)time(NULL));
	if (comment)
		sqlite3_bind_text(st, 2, comment, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, document, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, hex, -1, SQLITE_STATIC);
	int rc = step(s, st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return -EIO;
	*revision = sqlite3_last_insert_rowid(s->db);
	return 0;
}

static void row_to_revision(sqlite3_stmt *st, struct store_revision *r, bool with_document)
{
	r->revision = sqlite3_column_int64(st, 0);
	r->time = sqlite3_column_int64(st, 1);
	r->comment = dup_or_null(sqlite3_column_text(st, 2));
	r->sha256 = dup_or_null(sqlite3_column_text(st, 3));
	r->document = with_document ? dup_or_null(sqlite3_column_text(st, 4)) : NULL;
}

int store_get_revision(struct store *s, int64_t rev, struct store_revision *out)
{
	sqlite3_stmt *st = prepare(s, rev ? "SELECT revision, time, comment, sha256, document FROM revisions "
					    "WHERE revision = ?"
					  : "SELECT revision, time, comment, sha256, document FROM revisions "
					    "ORDER BY revision DESC LIMIT 1");
	if (!st)
		return -EIO;
	if (rev)
		sqlite3_bind_int64(st, 1, rev);
	int rc = step(s, st), r = 0;
	if (rc == SQLITE_ROW)
		row_to_revision(st, out, true);
	else
		r = rc == SQLITE_DONE ? -ENOENT : -EIO;
	sqlite3_finalize(st);
	return r;
}

int store_revision_sha256(struct store *s, int64_t rev, char out[65])
{
	sqlite3_stmt *st = prepare(s, "SELECT sha256 FROM revisions WHERE revision = ?");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, rev);
	int rc = step(s, st), r = 0;
	const unsigned char *hex = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
	if (hex)
		snprintf(out, 65, "%s", (const char *)hex);
	else
		r = rc == SQLITE_ROW || rc == SQLITE_DONE ? -ENOENT : -EIO;
	sqlite3_finalize(st);
	return r;
}

int store_each_revision(struct store *s, void (*fn)(void *data, const struct store_revision *r), void *data)
{
	sqlite3_stmt *st =
	    prepare(s, "SELECT revision, time, comment, sha256 FROM revisions ORDER BY revision DESC");
	if (!st)
		return -EIO;
	int rc;
	while ((rc = step(s, st)) == SQLITE_ROW) {
		struct store_revision r = {0};
		row_to_revision(st, &r, false);
		fn(data, &r);
		store_revision_release(&r);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_put_inventory(struct store *s, const char *node, const char *endpoints_json)
{
	sqlite3_stmt *st = prepare(
	    s, "INSERT INTO inventory (node, time, endpoints) VALUES (?,?,?) "
	       "ON CONFLICT(node) DO UPDATE SET time = excluded.time, endpoints = excluded.endpoints");
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)time(NULL));
	sqlite3_bind_text(st, 3, endpoints_json, -1, SQLITE_STATIC);
	int rc = step(s, st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_each_inventory(struct store *s,
			 void (*fn)(void *data, const char *node, const char *endpoints_json), void *data)
{
	sqlite3_stmt *st = prepare(s, "SELECT node, endpoints FROM inventory ORDER BY node");
	if (!st)
		return -EIO;
	int rc;
	while ((rc = step(s, st)) == SQLITE_ROW)
		fn(data, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_forget_node(struct store *s, const char *node)
{
	sqlite3_stmt *st = prepare(s, "DELETE FROM inventory WHERE node = ?");
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

/* ---- denied flows ---- */

static const char *const drop_names[STORE_DROP_COUNT] = {
    [STORE_DROP_RATE] = "rate",	      [STORE_DROP_QUOTA] = "quota",   [STORE_DROP_REJECTED] = "rejected",
    [STORE_DROP_EXPIRED] = "expired", [STORE_DROP_FUTURE] = "future", [STORE_DROP_FOREIGN] = "foreign",
};

const char *store_drop_name(enum store_drop d)
{
	return d < STORE_DROP_COUNT ? drop_names[d] : "?";
}

static void bind_text_or_null(sqlite3_stmt *st, int i, json_t *v)
{
	if (json_is_string(v))
		sqlite3_bind_text(st, i, json_string_value(v), -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

static void bind_int_or_null(sqlite3_stmt *st, int i, json_t *v)
{
	if (json_is_integer(v))
		sqlite3_bind_int64(st, i, json_integer_value(v));
	else
		sqlite3_bind_null(st, i);
}

/* Runs st (bound) once more and resets it; false on an error. */
static bool run(struct store *s, sqlite3_stmt *st)
{
	int rc = step(s, st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE;
}

int store_flow_batch_seen(struct store *s, const char *node, int64_t epoch, int64_t seq)
{
	sqlite3_stmt *st = prepare(s, "SELECT 1 FROM flow_batches WHERE node = ? AND epoch = ? AND seq = ?");
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, epoch);
	sqlite3_bind_int64(st, 3, seq);
	int rc = step(s, st);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}

int store_flow_records(struct store *s, const char *node, int64_t *records)
{
	sqlite3_stmt *st = prepare(s, "SELECT records FROM flow_usage WHERE node = ?");
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
	int rc = step(s, st);
	if (rc == SQLITE_ROW || rc == SQLITE_DONE)
		*records = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

/* Adds drops to the node's row of minute (one per reason), or new rows. */
static bool insert_drops(struct store *s, const char *node, const struct store_drops *drops, int64_t minute)
{
	sqlite3_stmt *add = prepare(s, "UPDATE flow_drops SET batches = MIN(batches + ?4, " SUM_MAX "),"
				       " records = MIN(records + ?5, " SUM_MAX "),"
				       " packets = MIN(packets + MIN(?6," SUM_MAX "), " SUM_MAX ")"
				       " WHERE node = ?1 AND reason = ?2 AND time = ?3");
	sqlite3_stmt *st =
	    add ? prepare(s, "INSERT INTO flow_drops (node, reason, time, batches, records, packets)"
			     " VALUES (?1,?2,?3,?4,?5,MIN(?6," SUM_MAX "))")
		: NULL;
	bool ok = st != NULL;
	for (int d = 0; ok && d < STORE_DROP_COUNT; d++) {
		const struct store_drop_count *c = &drops->v[d];
		if (!c->batches && !c->records && !c->packets)
			continue;
		for (sqlite3_stmt *q = add; q; q = q == add ? st : NULL) {
			sqlite3_bind_text(q, 1, node, -1, SQLITE_STATIC);
			sqlite3_bind_text(q, 2, drop_names[d], -1, SQLITE_STATIC);
			sqlite3_bind_int64(q, 3, minute);
			sqlite3_bind_int64(q, 4, c->batches);
			sqlite3_bind_int64(q, 5, c->records);
			sqlite3_bind_int64(q, 6, c->packets);
		}
		ok = run(s, add) && (sqlite3_changes(s->db) > 0 || run(s, st));
	}
	sqlite3_finalize(add);
	sqlite3_finalize(st);
	return ok;
}

static int64_t minute_of(int64_t ms)
{
	return ms - ms % MERGE_MS + MERGE_MS - 1;
}

int store_add_flow_drops(struct store *s, const char *node, const struct store_drops *drops, int64_t now_ms)
{
	if (exec(s, "BEGIN IMMEDIATE") < 0)
		return -EIO;
	if (!insert_drops(s, node, drops, minute_of(now_ms)) || exec(s, "COMMIT") < 0) {
		rollback(s);
		return -EIO;
	}
	return 0;
}

/* The batch's flows, hits, losses and drops, and the node's usage: the
 * body of store_add_flow_batch's transaction. */
static bool insert_batch(struct store *s, const char *node, json_t *batch, const struct store_drops *drops,
			 int64_t minute)
{
	sqlite3_stmt *st =
	    prepare(s, "INSERT INTO flows (node, endpoint, direction, first, last, src, src_endpoint,"
		       " src_groups, dst, dst_endpoint, dst_groups, proto, port, icmp_type, icmp_code,"
		       " verdict, policy, rule, count)"
		       " VALUES (?,?,?,?,?,?,?,COALESCE(?,''),?,?,COALESCE(?,''),?,?,?,?,?,?,?,"
		       "MIN(?," COUNT_MAX "))");
	if (!st)
		return false;
	size_t i;
	json_t *f;
	int64_t records = 0;
	json_array_foreach (json_object_get(batch, "flows"), i, f) {
		sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
		bind_text_or_null(st, 2, json_object_get(f, "endpoint"));
		bind_text_or_null(st, 3, json_object_get(f, "dir"));
		bind_int_or_null(st, 4, json_object_get(f, "first"));
		bind_int_or_null(st, 5, json_object_get(f, "last"));
		bind_text_or_null(st, 6, json_object_get(f, "src"));
		bind_text_or_null(st, 7, json_object_get(f, "src_endpoint"));
		bind_text_or_null(st, 8, json_object_get(f, "src_groups"));
		bind_text_or_null(st, 9, json_object_get(f, "dst"));
		bind_text_or_null(st, 10, json_object_get(f, "dst_endpoint"));
		bind_text_or_null(st, 11, json_object_get(f, "dst_groups"));
		bind_text_or_null(st, 12, json_object_get(f, "proto"));
		bind_int_or_null(st, 13, json_object_get(f, "port"));
		bind_int_or_null(st, 14, json_object_get(f, "icmp_type"));
		bind_int_or_null(st, 15, json_object_get(f, "icmp_code"));
		bind_text_or_null(st, 16, json_object_get(f, "verdict"));
		bind_text_or_null(st, 17, json_object_get(f, "policy"));
		bind_text_or_null(st, 18, json_object_get(f, "rule"));
		bind_int_or_null(st, 19, json_object_get(f, "count"));
		if (!run(s, st))
			goto fail;
		records++;
	}
	sqlite3_finalize(st);
	st = prepare(s,
		     "INSERT INTO rule_hits (node, endpoint, groups, direction, policy, rule, verdict, time,"
		     " packets, bytes) VALUES (?,?,COALESCE(?,''),?,?,?,?,?,MIN(?," COUNT_MAX
		     "),MIN(?," COUNT_MAX "))");
	if (!st)
		return false;
	json_array_foreach (json_object_get(batch, "hits"), i, f) {
		sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
		bind_text_or_null(st, 2, json_object_get(f, "endpoint"));
		bind_text_or_null(st, 3, json_object_get(f, "groups")); /* COALESCEd: never NULL */
		bind_text_or_null(st, 4, json_object_get(f, "dir"));
		bind_text_or_null(st, 5, json_object_get(f, "policy"));
		bind_text_or_null(st, 6, json_object_get(f, "rule"));
		bind_text_or_null(st, 7, json_object_get(f, "verdict"));
		sqlite3_bind_int64(st, 8, json_integer_value(json_object_get(batch, "end")));
		bind_int_or_null(st, 9, json_object_get(f, "packets"));
		bind_int_or_null(st, 10, json_object_get(f, "bytes"));
		if (!run(s, st))
			goto fail;
		records++;
	}
	sqlite3_finalize(st);
	/* Losses: added to the minute's row of the endpoint (IS: NULL too), or
	 * a new row. Each count is clamped, and a sum stops at SUM_MAX. */
	sqlite3_stmt *add = prepare(s, "UPDATE flow_losses SET enobufs = MIN(enobufs + MIN(?4," COUNT_MAX
				       "), " SUM_MAX "), gap = MIN(gap + MIN(?5," COUNT_MAX "), " SUM_MAX "),"
				       " spool = MIN(spool + MIN(?6," COUNT_MAX "), " SUM_MAX ")"
				       " WHERE node = ?1 AND endpoint IS ?2 AND time = ?3");
	st = add ? prepare(s, "INSERT INTO flow_losses (node, endpoint, time, enobufs, gap, spool)"
			      " VALUES (?1,?2,?3,MIN(?4," COUNT_MAX "),MIN(?5," COUNT_MAX
			      "),MIN(?6," COUNT_MAX "))")
		 : NULL;
	if (!st) {
		sqlite3_finalize(add);
		return false;
	}
	json_array_foreach (json_object_get(batch, "lost"), i, f) {
		for (sqlite3_stmt *q = add; q; q = q == add ? st : NULL) {
			sqlite3_bind_text(q, 1, node, -1, SQLITE_STATIC);
			bind_text_or_null(q, 2, json_object_get(f, "endpoint"));
			sqlite3_bind_int64(q, 3, minute);
			bind_int_or_null(q, 4, json_object_get(f, "enobufs"));
			bind_int_or_null(q, 5, json_object_get(f, "gap"));
			bind_int_or_null(q, 6, json_object_get(f, "spool"));
		}
		if (!run(s, add) || (sqlite3_changes(s->db) == 0 && !run(s, st))) {
			sqlite3_finalize(add);
			goto fail;
		}
	}
	sqlite3_finalize(add);
	sqlite3_finalize(st);
	if (!insert_drops(s, node, drops, minute))
		return false;
	if (!records)
		return true;
	st = prepare(s, "INSERT INTO flow_usage (node, records) VALUES (?,?)"
			" ON CONFLICT(node) DO UPDATE SET records = records + excluded.records");
	if (!st)
		return false;
	sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, records);
	if (!run(s, st))
		goto fail;
	sqlite3_finalize(st);
	return true;
fail:
	sqlite3_finalize(st);
	return false;
}

int store_add_flow_batch(struct store *s, const char *node, json_t *batch, const struct store_drops *drops,
			 int64_t now_ms)
{
	if (exec(s, "BEGIN IMMEDIATE") < 0)
		return -EIO;
	sqlite3_stmt *st =
	    prepare(s, "INSERT OR IGNORE INTO flow_batches (node, epoch, seq, received, start, end) "
		       "VALUES (?,?,?,?,?,?)");
	if (!st)
		goto fail;
	sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, json_integer_value(json_object_get(batch, "epoch")));
	sqlite3_bind_int64(st, 3, json_integer_value(json_object_get(batch, "seq")));
	sqlite3_bind_int64(st, 4, now_ms);
	sqlite3_bind_int64(st, 5, json_integer_value(json_object_get(batch, "start")));
	sqlite3_bind_int64(st, 6, json_integer_value(json_object_get(batch, "end")));
	int rc = step(s, st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		goto fail;
	if (sqlite3_changes(s->db) == 0) { /* a resent batch: stored before */
		rollback(s);
		return 0;
	}
	if (!insert_batch(s, node, batch, drops, minute_of(now_ms)) || exec(s, "COMMIT") < 0)
		goto fail;
	return 1;
fail:
	rollback(s);
	return -EIO;
}

/* The condition that side's end ("src", "dst") is in group (bound as
 * ?param), or in none (FLOW_GROUP_*); "" when group is NULL. */
static int side_filter(char *buf, size_t n, const char *side, const char *group, int param)
{
	if (!group)
		return 0;
	if (strcmp(group, FLOW_GROUP_UNGROUPED) == 0 || strcmp(group, FLOW_GROUP_OUTSIDE) == 0)
		return snprintf(buf, n, " AND %s_groups = '' AND %s_endpoint IS %sNULL", side, side,
				strcmp(group, FLOW_GROUP_OUTSIDE) == 0 ? "" : "NOT ");
	return snprintf(buf, n, " AND instr(',' || %s_groups || ',', ',' || ?%d || ',') > 0", side, param);
}

/* The WHERE clause of a flow query over table (flows, rule_hits or the
 * loss tables), binds from index 1: only the filters q sets, so that the
 * indexes by node and time serve them. */
static void flow_filter(char *buf, size_t n, const struct flow_query *q, const char *table)
{
	bool flows = strcmp(table, "flows") == 0;
	int len = snprintf(buf, n, " WHERE %s >= ?1", flows ? "last" : "time");
	if (q->node)
		len += snprintf(buf + len, n - (size_t)len, " AND node = ?2");
	if (strcmp(table, "flows") != 0 && strcmp(table, "rule_hits") != 0)
		return;
	if (q->verdict)
		len += snprintf(buf + len, n - (size_t)len, " AND verdict = ?3");
	else if (q->blocked_only && flows)
		len += snprintf(buf + len, n - (size_t)len, " AND verdict != 'allow'");
	if (q->group && !flows)
		len += snprintf(buf + len, n - (size_t)len,
				" AND instr(',' || groups || ',', ',' || ?4 || ',') > 0");
	else if (q->group && q->mode == FLOW_QUERY_RULES) /* a rule is its endpoint's */
		len += snprintf(
		    buf + len, n - (size_t)len,
		    " AND instr(',' || CASE direction WHEN 'ingress' THEN dst_groups ELSE src_groups END"
		    " || ',', ',' || ?4 || ',') > 0");
	else if (q->group)
		len += snprintf(buf + len, n - (size_t)len,
				" AND (instr(',' || src_groups || ',', ',' || ?4 || ',') > 0"
				" OR instr(',' || dst_groups || ',', ',' || ?4 || ',') > 0)");
	if (flows) {
		len += side_filter(buf + len, n - (size_t)len, "src", q->src_group, 7);
		len += side_filter(buf + len, n - (size_t)len, "dst", q->dst_group, 8);
	}
	if (flows && q->port.set) {
		if (q->port.proto)
			len += snprintf(buf + len, n - (size_t)len, " AND proto = ?9");
		if (q->port.lo != 0 || q->port.hi != 65535)
			len += snprintf(buf + len, n - (size_t)len, " AND port BETWEEN ?10 AND ?11");
		if (q->port.icmp_type >= 0)
			len += snprintf(buf + len, n - (size_t)len, " AND icmp_type = ?12");
		if (q->port.icmp_code >= 0)
			len += snprintf(buf + len, n - (size_t)len, " AND icmp_code = ?13");
	}
	if (flows && q->after_id)
		snprintf(buf + len, n - (size_t)len, " AND id > ?5");
}

static void bind_query(sqlite3_stmt *st, const struct flow_query *q)
{
	sqlite3_bind_int64(st, 1, q->since_ms);
	if (q->node)
		sqlite3_bind_text(st, 2, q->node, -1, SQLITE_STATIC);
	if (q->verdict)
		sqlite3_bind_text(st, 3, q->verdict, -1, SQLITE_STATIC);
	if (q->group)
		sqlite3_bind_text(st, 4, q->group, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, q->after_id);
	sqlite3_bind_int64(st, 6, q->limit > 0 ? q->limit : -1);
	if (q->src_group)
		sqlite3_bind_text(st, 7, q->src_group, -1, SQLITE_STATIC);
	if (q->dst_group)
		sqlite3_bind_text(st, 8, q->dst_group, -1, SQLITE_STATIC);
	if (q->port.proto)
		sqlite3_bind_text(st, 9, q->port.proto, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 10, q->port.lo);
	sqlite3_bind_int(st, 11, q->port.hi);
	sqlite3_bind_int(st, 12, q->port.icmp_type);
	sqlite3_bind_int(st, 13, q->port.icmp_code);
}

static json_t *column_json(sqlite3_stmt *st, int i)
{
	switch (sqlite3_column_type(st, i)) {
	case SQLITE_INTEGER:
		return json_integer(sqlite3_column_int64(st, i));
	case SQLITE_TEXT:
		return json_string((const char *)sqlite3_column_text(st, i));
	default:
		return json_null();
	}
}

/* Every row of st as an object with the columns' names. */
static json_t *rows_json(struct store *s, sqlite3_stmt *st, int *rc)
{
	json_t *rows = json_array();
	while ((*rc = step(s, st)) == SQLITE_ROW) {
		json_t *row = json_object();
		for (int i = 0; i < sqlite3_column_count(st); i++)
			json_object_set_new(row, sqlite3_column_name(st, i), column_json(st, i));
		json_array_append_new(rows, row);
	}
	return rows;
}

/* Every row of sql (bound from q) into *out; false on an error. */
static bool query_rows(struct store *s, const char *sql, const struct flow_query *q, json_t **out)
{
	sqlite3_stmt *st = prepare(s, sql);
	if (!st)
		return false;
	bind_query(st, q);
	int rc;
	json_t *rows = rows_json(s, st, &rc);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		json_decref(rows);
		return false;
	}
	*out = rows;
	return true;
}

/* SQLite calls it every few thousand steps of a query: past the deadline
 * the query is interrupted (SQLITE_INTERRUPT), so that it cannot hold the
 * controller's loop for long. */
static int query_deadline(void *data)
{
	struct store *s = data;
	return atomic_load(&s->stop) || (s->query_ms && clock_mono_ms() >= s->deadline_ms);
}

void store_set_query_limit(struct store *s, int64_t ms)
{
	s->query_ms = ms > 0 ? ms : 0;
}

static int flows_query(struct store *s, const struct flow_query *q, json_t **out)
{
	char sql[4096], where[1024], where2[1024];
	flow_filter(where, sizeof(where), q, "flows");
	if (q->mode == FLOW_QUERY_FOLLOW) {
		snprintf(
		    sql, sizeof(sql),
		    "SELECT id, node, endpoint, direction, first, last, src, src_endpoint, src_groups, dst,"
		    " dst_endpoint, dst_groups, proto, port, icmp_type, icmp_code, verdict, policy, rule, "
		    "count"
		    " FROM flows%s ORDER BY id LIMIT ?6",
		    where);
	} else if (q->mode == FLOW_QUERY_RULES) {
		/* Per rule: what its kernel counters counted (hits; every verdict)
		 * beside the packets the denied-flow reports gave it (count). A
		 * rule belongs to the endpoint that enforces it, so --group
		 * means that endpoint's groups on both sides: the destination's
		 * for an ingress flow, the source's for an egress one. */
		flow_filter(where2, sizeof(where2), q, "rule_hits");
		snprintf(
		    sql, sizeof(sql),
		    "SELECT policy, rule, verdict, " SUM("hits") " AS hits, " SUM("bytes") " AS bytes, " SUM(
			"count") " AS count, " SUM("pairs") " AS pairs, MIN(first) AS first, MAX(last) AS "
							    "last FROM ("
							    "  SELECT policy, rule, verdict, " SUM("packets") " AS hits, " SUM(
								"bytes") " AS bytes,"
									 "   0 AS count, 0 AS pairs, "
									 "MIN(time) AS first, MAX(time) AS "
									 "last FROM rule_hits%s"
									 "   GROUP BY policy, rule, verdict"
									 "  UNION ALL"
									 "  SELECT policy, rule, verdict, 0, "
									 "0, " SUM("count") ", "
											    "COUNT(DISTINCT "
											    "src || ' ' || "
											    "dst),"
											    "   MIN(first), "
											    "MAX(last) FROM "
											    "flows%s"
											    "   GROUP BY "
											    "policy, rule, "
											    "verdict)"
											    " GROUP BY "
											    "policy, rule, "
											    "verdict ORDER "
											    "BY " SUM("hits") " + " SUM(
												"count") " DE"
													 "SC,"
													 " ru"
													 "le "
													 "LIM"
													 "IT "
													 "?6",
		    where2, where);
	} else if (q->mode == FLOW_QUERY_GROUPS) {
		/* The group map's edges: few rows, however many flows (one per
		 * combination of both ends' groups and the verdict). */
		snprintf(
		    sql, sizeof(sql),
		    "SELECT src_groups, src_endpoint IS NULL AS src_outside, dst_groups,"
		    " dst_endpoint IS NULL AS dst_outside, verdict, " SUM(
			"count") " AS count,"
				 " COUNT(DISTINCT src || ' ' || dst) AS pairs, MAX(last) AS last FROM flows%s"
				 " GROUP BY src_groups, src_outside, dst_groups, dst_outside, verdict"
				 " ORDER BY " SUM("count") " DESC, src_groups, dst_groups, verdict LIMIT ?6",
		    where);
	} else { /* the names are the newest window's: joined back on its row */
		snprintf(
		    sql, sizeof(sql),
		    "SELECT f.id AS id, f.node AS node, f.endpoint AS endpoint, f.direction AS direction,"
		    " a.first AS first, a.last AS last, f.src AS src, f.src_endpoint AS src_endpoint,"
		    " f.src_groups AS src_groups, f.dst AS dst, f.dst_endpoint AS dst_endpoint,"
		    " f.dst_groups AS dst_groups, f.proto AS proto, f.port AS port, f.icmp_type AS icmp_type,"
		    " f.icmp_code AS icmp_code, f.verdict AS verdict, f.policy AS policy, f.rule AS rule,"
		    " a.count AS count FROM (SELECT MAX(id) AS id, MIN(first) AS first, MAX(last) AS last,"
		    " " SUM(
			"count") " AS count FROM flows%s GROUP BY node, endpoint, direction, src, dst, proto,"
				 " port, icmp_type, icmp_code, verdict, policy, rule) a JOIN flows f ON f.id "
				 "= a.id"
				 " ORDER BY a.last DESC, a.id DESC LIMIT ?6",
		    where);
	}
	json_t *rows = NULL, *lost = NULL, *dropped = NULL;
	if (!query_rows(s, sql, q, &rows))
		goto fail;
	flow_filter(where, sizeof(where), q, "flow_losses");
	snprintf(sql, sizeof(sql),
		 "SELECT node, endpoint, " SUM("enobufs") " AS enobufs, " SUM("gap") " AS gap, " SUM(
		     "spool") " AS spool FROM flow_losses%s GROUP BY node, endpoint ORDER BY node, endpoint",
		 where);
	if (!query_rows(s, sql, q, &lost))
		goto fail;
	snprintf(sql, sizeof(sql),
		 "SELECT node, reason, " SUM("batches") " AS batches, " SUM("records") " AS records, " SUM(
		     "packets") " AS packets FROM flow_drops%s GROUP BY node, reason ORDER BY node, reason",
		 where);
	if (!query_rows(s, sql, q, &dropped))
		goto fail;
	json_int_t last_id = q->after_id;
	sqlite3_stmt *st = prepare(s, "SELECT MAX(id) FROM flows");
	if (!st)
		goto fail;
	int rc = step(s, st);
	if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_INTEGER)
		last_id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		goto fail;
	*out = json_pack("{s:o,s:o,s:o,s:I}",
			 q->mode == FLOW_QUERY_RULES	? "rules"
			 : q->mode == FLOW_QUERY_GROUPS ? "groups"
							: "flows",
			 rows, "lost", lost, "dropped", dropped, "last_id", last_id);
	return 0;
fail:
	json_decref(rows);
	json_decref(lost);
	json_decref(dropped);
	return sqlite3_errcode(s->db) == SQLITE_INTERRUPT ? -ETIMEDOUT : -EIO;
}

int store_query_flows(struct store *s, const struct flow_query *q, json_t **out)
{
	s->deadline_ms = clock_mono_ms() + s->query_ms;
	sqlite3_progress_handler(s->db, 1000, query_deadline, s);
	int r = flows_query(s, q, out);
	sqlite3_progress_handler(s->db, 0, NULL, NULL);
	if (r == -ETIMEDOUT && atomic_load(&s->stop))
		snprintf(s->error, sizeof(s->error), "the controller is stopping");
	else if (r == -ETIMEDOUT)
		snprintf(s->error, sizeof(s->error), "the query was stopped after %lld ms",
			 (long long)s->query_ms);
	return r;
}

/* Deletes a chunk of table's rows older than before_ms (the column time_col),
 * and takes what each node lost off its usage. Returns the rows deleted,
 * or -EIO. */
static int64_t prune_counted(struct store *s, const char *table, const char *time_col, int64_t before_ms,
			     int64_t max_rows)
{
	char sql[256];
	snprintf(sql, sizeof(sql),
		 "DELETE FROM %s WHERE rowid IN (SELECT rowid FROM %s WHERE %s < ?1 LIMIT ?2) RETURNING node",
		 table, table, time_col);
	sqlite3_stmt *st = prepare(s, sql);
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, before_ms);
	sqlite3_bind_int64(st, 2, max_rows);
	json_t *per_node = json_object();
	int64_t n = 0;
	int rc;
	while ((rc = step(s, st)) == SQLITE_ROW) {
		const char *node = (const char *)sqlite3_column_text(st, 0);
		json_t *c = node ? json_object_get(per_node, node) : NULL;
		if (c)
			json_integer_set(c, json_integer_value(c) + 1);
		else if (node)
			json_object_set_new(per_node, node, json_integer(1));
		n++;
	}
	sqlite3_finalize(st);
	st = rc == SQLITE_DONE
		 ? prepare(s, "UPDATE flow_usage SET records = MAX(records - ?2, 0) WHERE node = ?1")
		 : NULL;
	const char *node;
	json_t *c;
	json_object_foreach (per_node, node, c) {
		if (!st)
			break;
		sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, json_integer_value(c));
		if (!run(s, st)) {
			sqlite3_finalize(st);
			st = NULL;
		}
	}
	bool ok = st != NULL;
	sqlite3_finalize(st);
	json_decref(per_node);
	return ok ? n : -EIO;
}

int store_prune_flows(struct store *s, int64_t before_ms, int64_t keys_before_ms, int64_t max_rows,
		      int64_t *removed)
{
	/* A bounded chunk of each: the controller's loop waits meanwhile. */
	static const char *const sql[] = {
	    "DELETE FROM flow_losses WHERE rowid IN (SELECT rowid FROM flow_losses WHERE time < ?1 LIMIT ?3)",
	    "DELETE FROM flow_drops WHERE rowid IN (SELECT rowid FROM flow_drops WHERE time < ?1 LIMIT ?3)",
	    "DELETE FROM flow_batches WHERE rowid IN (SELECT rowid FROM flow_batches WHERE received < ?2 "
	    "LIMIT ?3)",
	};
	bool more = false;
	if (exec(s, "BEGIN IMMEDIATE") < 0)
		return -EIO;
	int64_t flows = prune_counted(s, "flows", "last", before_ms, max_rows);
	int64_t hits = flows < 0 ? -EIO : prune_counted(s, "rule_hits", "time", before_ms, max_rows);
	if (hits < 0)
		goto fail;
	more = flows >= max_rows || hits >= max_rows;
	for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
		sqlite3_stmt *st = prepare(s, sql[i]);
		if (!st)
			goto fail;
		sqlite3_bind_int64(st, 1, before_ms);
		sqlite3_bind_int64(st, 2, keys_before_ms);
		sqlite3_bind_int64(st, 3, max_rows);
		int rc = step(s, st);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			goto fail;
		more |= sqlite3_changes(s->db) >= max_rows;
	}
	if (exec(s, "COMMIT") < 0)
		goto fail;
	*removed = flows;
	return more;
fail:
	rollback(s);
	return -EIO;
}
