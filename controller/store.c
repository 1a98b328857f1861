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

/* The flows table is created now so that the schema is whole; the flow
 * reports fill it. */
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
	"  endpoints TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS flows ("
	"  node TEXT NOT NULL, batch INTEGER NOT NULL, first_seen INTEGER NOT NULL,"
	"  last_seen INTEGER NOT NULL, endpoint TEXT NOT NULL, direction TEXT NOT NULL,"
	"  src TEXT NOT NULL, dst TEXT NOT NULL, proto TEXT NOT NULL, port INTEGER,"
	"  verdict TEXT NOT NULL, rule TEXT NOT NULL, count INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS flow_batches ("
	"  node TEXT NOT NULL, batch INTEGER NOT NULL, PRIMARY KEY (node, batch));";

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
	    sqlite3_exec(s->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
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
