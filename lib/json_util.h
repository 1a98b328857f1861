/* libbulkhead-internal JSON helpers shared by the parsers. */
#pragma once

#include <jansson.h>

#include <stdbool.h>

#include "bulkhead/arena.h"
#include "bulkhead/diag.h"
#include "bulkhead/policy.h"

/* "an object", "a string", … for error messages. */
const char *json_util_type_name_a(json_type type);

/* An integer as JSON Schema sees one: 3, or 3.0 (a number whose fraction
 * is zero), within json_int_t. false for anything else. */
bool json_integral(const json_t *v, json_int_t *out);

/* The closest candidate to word (edit distance ≤ 2 and less than half its
 * length), or NULL. candidates is NULL-terminated. */
const char *json_util_suggest(const char *word, const char *const *candidates);

/* Load JSON, rejecting duplicate object keys; a syntax error is recorded
 * in diag with its line and column. */
json_t *json_util_loadb(const char *text, size_t len, struct diag *diag);
/* A document file read whole (fileio.h: a regular file of at most max
 * bytes) into *text (malloc()ed, NUL-terminated, the caller's); why not is
 * recorded in diag ("cannot open: ...", "larger than N bytes (N MiB), the
 * most WHAT may be"). 0 or fileio_read's negative errno. */
BH_MUST_CHECK int json_util_read_file(const char *path, size_t max, const char *what, char **text,
				      size_t *len, struct diag *diag);
/* The same file loaded as JSON; NULL when unread or invalid (in diag). */
json_t *json_util_load_file(const char *path, size_t max, const char *what, struct diag *diag);

/* A walk over an untrusted document: where we are (path), where errors go
 * (diag) and where parsed data lives (arena). Every walk_* function records
 * its own errors at the current path. */
struct json_walk {
	struct arena *arena;
	struct diag *diag;
	struct jpath path;
	bool oom;
};

struct key_hint {
	const char *key, *hint;
};

void walk_init(struct json_walk *w, struct arena *arena, struct diag *diag);
void walk_error(struct json_walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reports a type mismatch; false then. */
bool walk_expect_type(struct json_walk *w, json_t *v, json_type type);
/* Reports keys of obj not in allowed (NULL-terminated); hints name keys
 * that belong elsewhere. */
void walk_check_keys(struct json_walk *w, json_t *obj, const char *const *allowed,
		     const struct key_hint *hints);
/* Copy of a string value in the arena, or NULL (reported). */
const char *walk_take_string(struct json_walk *w, json_t *v);
/* Checks an optional "description" string member. */
void walk_description(struct json_walk *w, json_t *obj);
/* A label map {"key": "value"} in Kubernetes syntax, sorted by key. */
bool walk_labels(struct json_walk *w, json_t *obj, struct label_set *out);
/* Names of groups, policies, endpoints: [A-Za-z0-9][A-Za-z0-9._-]*, at most max. */
bool name_valid(const char *s, size_t max);
