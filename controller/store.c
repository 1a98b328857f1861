/* The controller's SQLite state (see store.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "bulkhead/sha256.h"
#include "store.h"

struct store {
	sqlite3 *db;
};

/* What one stored row may count (2^40): no traffic comes near it, and the
 * queries' sums stay far from int64's end whatever an agent sends. */
#define COUNT_MAX "1099511627776"

/* Schema version 2 added the flow reports; version 1's flows tables were
 * placeholders that nothing ever filled, so they are replaced. Version 3
 * added rule_hits. */
#define SCHEMA_VERSION 3
static const char schema[] =
	"PRAGMA journal_mode=WAL;"
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
	"CREATE TABLE IF NOT EXISTS flow_losses ("
	"  id INTEGER PRIMARY KEY, node TEXT NOT NULL, endpoint TEXT, time INTEGER NOT NULL,"
	"  enobufs INTEGER NOT NULL, gap INTEGER NOT NULL, spool INTEGER NOT NULL);"
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

static int schema_upgrade(struct store *s, char **msg)
{
	sqlite3_stmt *st = NULL;
	int version = 0, rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
	if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_OK)
		return rc;
	if (version < 2 && (rc = sqlite3_exec(s->db, schema_v1_flows_drop, NULL, NULL, msg)) != SQLITE_OK)
		return rc;
	if ((rc = sqlite3_exec(s->db, schema_flows, NULL, NULL, msg)) != SQLITE_OK)
		return rc;
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", SCHEMA_VERSION);
	return sqlite3_exec(s->db, sql, NULL, NULL, msg);
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
	struct store *s = calloc(1, sizeof(*s));
	if (!s)
		abort();
	char *msg = NULL;
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK ||
	    sqlite3_busy_timeout(s->db, 5000) != SQLITE_OK ||
	    sqlite3_exec(s->db, schema, NULL, NULL, &msg) != SQLITE_OK || schema_upgrade(s, &msg) != SQLITE_OK) {
		if (asprintf(err, "%s: %s", path, msg ? msg : sqlite3_errmsg(s->db)) < 0)
			*err = NULL;
		sqlite3_free(msg);
		store_free(s);
		return NULL;
	}
	return s;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	sqlite3_close(s->db);
	free(s);
}

const char *store_error(struct store *s)
{
	return sqlite3_errmsg(s->db);
}

static sqlite3_stmt *prepare(struct store *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return NULL;
	return st;
}

int store_add_revision(struct store *s, const char *document, const char *comment, int64_t *revision)
{
	char hex[65];
	sha256_hex(document, strlen(document), hex);
	sqlite3_stmt *st = prepare(s, "INSERT INTO revisions (time, comment, document, sha256) VALUES (?,?,?,?)");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, (int64_t)time(NULL));
	if (comment)
		sqlite3_bind_text(st, 2, comment, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, document, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, hex, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
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
	int rc = sqlite3_step(st), r = 0;
	if (rc == SQLITE_ROW)
		row_to_revision(st, out, true);
	else
		r = rc == SQLITE_DONE ? -ENOENT : -EIO;
	sqlite3_finalize(st);
	return r;
}

int store_each_revision(struct store *s, void (*fn)(void *data, const struct store_revision *r), void *data)
{
	sqlite3_stmt *st = prepare(s, "SELECT revision, time, comment, sha256 FROM revisions ORDER BY revision DESC");
	if (!st)
		return -EIO;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
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
	sqlite3_stmt *st = prepare(s, "INSERT INTO inventory (node, time, endpoints) VALUES (?,?,?) "
				      "ON CONFLICT(node) DO UPDATE SET time = excluded.time, endpoints = excluded.endpoints");
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)time(NULL));
	sqlite3_bind_text(st, 3, endpoints_json, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_each_inventory(struct store *s, void (*fn)(void *data, const char *node, const char *endpoints_json),
			 void *data)
{
	sqlite3_stmt *st = prepare(s, "SELECT node, endpoints FROM inventory ORDER BY node");
	if (!st)
		return -EIO;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
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

static int exec(struct store *s, const char *sql)
{
	return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

int store_add_flow_batch(struct store *s, const char *node, json_t *batch, int64_t keep_after_ms)
{
	/* Older than what is kept: its key may be pruned already, so storing
	 * it could count it twice; and it would be pruned at once anyway. */
	if (json_integer_value(json_object_get(batch, "end")) < keep_after_ms)
		return STORE_BATCH_EXPIRED;
	if (exec(s, "BEGIN IMMEDIATE") < 0)
		return -EIO;
	sqlite3_stmt *st = prepare(s, "INSERT OR IGNORE INTO flow_batches (node, epoch, seq, received, start, end) "
				      "VALUES (?,?,?,?,?,?)");
	if (!st)
		goto fail;
	sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, json_integer_value(json_object_get(batch, "epoch")));
	sqlite3_bind_int64(st, 3, json_integer_value(json_object_get(batch, "seq")));
	sqlite3_bind_int64(st, 4, clock_wall_ms());
	sqlite3_bind_int64(st, 5, json_integer_value(json_object_get(batch, "start")));
	sqlite3_bind_int64(st, 6, json_integer_value(json_object_get(batch, "end")));
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		goto fail;
	if (sqlite3_changes(s->db) == 0) { /* a resent batch: stored before */
		exec(s, "ROLLBACK");
		return 0;
	}
	st = prepare(s, "INSERT INTO flows (node, endpoint, direction, first, last, src, src_endpoint, src_groups,"
			" dst, dst_endpoint, dst_groups, proto, port, icmp_type, icmp_code, verdict, policy, rule, count)"
			" VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,MIN(?," COUNT_MAX "))");
	if (!st)
		goto fail;
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(batch, "flows"), i, f)
	{
		sqlite3_reset(st);
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
		if (sqlite3_step(st) != SQLITE_DONE) {
			sqlite3_finalize(st);
			goto fail;
		}
	}
	sqlite3_finalize(st);
	st = prepare(s, "INSERT INTO rule_hits (node, endpoint, groups, direction, policy, rule, verdict, time,"
			" packets, bytes) VALUES (?,?,COALESCE(?,''),?,?,?,?,?,MIN(?," COUNT_MAX "),MIN(?," COUNT_MAX "))");
	if (!st)
		goto fail;
	json_array_foreach(json_object_get(batch, "hits"), i, f)
	{
		sqlite3_reset(st);
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
		if (sqlite3_step(st) != SQLITE_DONE) {
			sqlite3_finalize(st);
			goto fail;
		}
	}
	sqlite3_finalize(st);
	st = prepare(s, "INSERT INTO flow_losses (node, endpoint, time, enobufs, gap, spool) VALUES (?,?,?,?,?,?)");
	if (!st)
		goto fail;
	json_array_foreach(json_object_get(batch, "lost"), i, f)
	{
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
		bind_text_or_null(st, 2, json_object_get(f, "endpoint"));
		sqlite3_bind_int64(st, 3, json_integer_value(json_object_get(batch, "end")));
		bind_int_or_null(st, 4, json_object_get(f, "enobufs"));
		bind_int_or_null(st, 5, json_object_get(f, "gap"));
		bind_int_or_null(st, 6, json_object_get(f, "spool"));
		if (sqlite3_step(st) != SQLITE_DONE) {
			sqlite3_finalize(st);
			goto fail;
		}
	}
	sqlite3_finalize(st);
	if (exec(s, "COMMIT") < 0)
		goto fail;
	return 1;
fail:
	exec(s, "ROLLBACK");
	return -EIO;
}

/* The WHERE clause every flow query shares; binds from index 1. */
static const char flow_filter[] =
	" WHERE last >= ?1 AND (?2 IS NULL OR node = ?2) AND (?3 IS NULL OR verdict = ?3)"
	" AND (?4 IS NULL OR instr(',' || src_groups || ',', ',' || ?4 || ',') > 0"
	"      OR instr(',' || dst_groups || ',', ',' || ?4 || ',') > 0) AND id > ?5";

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
static json_t *rows_json(sqlite3_stmt *st, int *rc)
{
	json_t *rows = json_array();
	while ((*rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *row = json_object();
		for (int i = 0; i < sqlite3_column_count(st); i++)
			json_object_set_new(row, sqlite3_column_name(st, i), column_json(st, i));
		json_array_append_new(rows, row);
	}
	return rows;
}

json_t *store_query_flows(struct store *s, const struct flow_query *q)
{
	char sql[2048];
	if (q->mode == FLOW_QUERY_FOLLOW)
		snprintf(sql, sizeof(sql),
			 "SELECT id, node, endpoint, direction, first, last, src, src_endpoint, src_groups, dst,"
			 " dst_endpoint, dst_groups, proto, port, icmp_type, icmp_code, verdict, policy, rule, count"
			 " FROM flows%s ORDER BY id LIMIT ?6",
			 flow_filter);
	else if (q->mode == FLOW_QUERY_RULES)
		/* Per rule: what its kernel counters counted (hits; every verdict)
		 * beside the packets the denied-flow reports gave it (count). A
		 * rule belongs to the endpoint that enforces it, so --group
		 * means that endpoint's groups on both sides: the destination's
		 * for an ingress flow, the source's for an egress one. */
		snprintf(sql, sizeof(sql),
			 "SELECT policy, rule, verdict, SUM(hits) AS hits, SUM(bytes) AS bytes, SUM(count) AS count,"
			 " SUM(pairs) AS pairs, MIN(first) AS first, MAX(last) AS last FROM ("
			 "  SELECT policy, rule, verdict, SUM(packets) AS hits, SUM(bytes) AS bytes, 0 AS count,"
			 "   0 AS pairs, MIN(time) AS first, MAX(time) AS last FROM rule_hits"
			 "   WHERE time >= ?1 AND (?2 IS NULL OR node = ?2) AND (?3 IS NULL OR verdict = ?3)"
			 "   AND (?4 IS NULL OR instr(',' || groups || ',', ',' || ?4 || ',') > 0)"
			 "   GROUP BY policy, rule, verdict"
			 "  UNION ALL"
			 "  SELECT policy, rule, verdict, 0, 0, SUM(count), COUNT(DISTINCT src || ' ' || dst),"
			 "   MIN(first), MAX(last) FROM flows"
			 "   WHERE last >= ?1 AND (?2 IS NULL OR node = ?2) AND (?3 IS NULL OR verdict = ?3)"
			 "   AND (?4 IS NULL OR instr(',' || CASE direction WHEN 'ingress' THEN dst_groups"
			 "        ELSE src_groups END || ',', ',' || ?4 || ',') > 0) AND id > ?5"
			 "   GROUP BY policy, rule, verdict)"
			 " GROUP BY policy, rule, verdict ORDER BY SUM(hits) + SUM(count) DESC, rule LIMIT ?6");
	else /* the names are the newest window's: joined back on its row */
		snprintf(sql, sizeof(sql),
			 "SELECT f.id AS id, f.node AS node, f.endpoint AS endpoint, f.direction AS direction,"
			 " a.first AS first, a.last AS last, f.src AS src, f.src_endpoint AS src_endpoint,"
			 " f.src_groups AS src_groups, f.dst AS dst, f.dst_endpoint AS dst_endpoint,"
			 " f.dst_groups AS dst_groups, f.proto AS proto, f.port AS port, f.icmp_type AS icmp_type,"
			 " f.icmp_code AS icmp_code, f.verdict AS verdict, f.policy AS policy, f.rule AS rule,"
			 " a.count AS count FROM (SELECT MAX(id) AS id, MIN(first) AS first, MAX(last) AS last,"
			 " SUM(count) AS count FROM flows%s GROUP BY node, endpoint, direction, src, dst, proto, port,"
			 " icmp_type, icmp_code, verdict, policy, rule) a JOIN flows f ON f.id = a.id"
			 " ORDER BY a.last DESC, a.id DESC LIMIT ?6",
			 flow_filter);
	sqlite3_stmt *st = prepare(s, sql);
	if (!st)
		return NULL;
	bind_query(st, q);
	int rc;
	json_t *rows = rows_json(st, &rc);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		goto fail;
	st = prepare(s, "SELECT node, endpoint, SUM(enobufs) AS enobufs, SUM(gap) AS gap, SUM(spool) AS spool"
			" FROM flow_losses WHERE time >= ?1 AND (?2 IS NULL OR node = ?2)"
			" GROUP BY node, endpoint ORDER BY node, endpoint");
	if (!st)
		goto fail;
	sqlite3_bind_int64(st, 1, q->since_ms);
	if (q->node)
		sqlite3_bind_text(st, 2, q->node, -1, SQLITE_STATIC);
	json_t *lost = rows_json(st, &rc);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		json_decref(lost);
		goto fail;
	}
	json_int_t last_id = q->after_id;
	st = prepare(s, "SELECT MAX(id) FROM flows");
	if (st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_INTEGER)
		last_id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return json_pack("{s:o,s:o,s:I}", q->mode == FLOW_QUERY_RULES ? "rules" : "flows", rows, "lost", lost,
			 "last_id", last_id);
fail:
	json_decref(rows);
	return NULL;
}

int store_prune_flows(struct store *s, int64_t before_ms, int64_t keys_before_ms, int64_t max_rows,
		      int64_t *removed)
{
	/* A bounded chunk of each: the controller's loop waits meanwhile. */
	static const char *const sql[] = {
		"DELETE FROM flows WHERE rowid IN (SELECT rowid FROM flows WHERE last < ?1 LIMIT ?3)",
		"DELETE FROM rule_hits WHERE rowid IN (SELECT rowid FROM rule_hits WHERE time < ?1 LIMIT ?3)",
		"DELETE FROM flow_losses WHERE rowid IN (SELECT rowid FROM flow_losses WHERE time < ?1 LIMIT ?3)",
		"DELETE FROM flow_batches WHERE rowid IN (SELECT rowid FROM flow_batches WHERE received < ?2 LIMIT ?3)",
	};
	int64_t n = 0;
	bool more = false;
	if (exec(s, "BEGIN IMMEDIATE") < 0)
		return -EIO;
	for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
		sqlite3_stmt *st = prepare(s, sql[i]);
		if (!st)
			goto fail;
		sqlite3_bind_int64(st, 1, before_ms);
		sqlite3_bind_int64(st, 2, keys_before_ms);
		sqlite3_bind_int64(st, 3, max_rows);
		int rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			goto fail;
		int64_t changed = sqlite3_changes(s->db);
		more |= changed >= max_rows;
		if (i == 0)
			n = changed;
	}
	if (exec(s, "COMMIT") < 0)
		goto fail;
	*removed = n;
	return more;
fail:
	exec(s, "ROLLBACK");
	return -EIO;
}
