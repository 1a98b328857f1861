/* store: the controller's state in SQLite (WAL) at STATE_DIR/controller.db —
 * policy revisions, the last endpoint list each node reported, what each
 * node last acknowledged, and the denied flows (filled by the flow reports).
 * A restart resumes from it. Every write is its own transaction. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

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
