/* JSON helpers for the parsers: loading with precise syntax errors, type
 * names and "did you mean" suggestions. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/arena.h"
#include "bulkhead/fileio.h"

#include "json_util.h"

bool json_integral(const json_t *v, json_int_t *out)
{
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return true;
	}
	if (!json_is_real(v))
		return false;
	double d = json_real_value(v);
	/* 2^63 is the first double out of range (and NaN is in no range). */
	if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
		return false;
	json_int_t i = (json_int_t)d;
	if ((double)i != d)
		return false;
	*out = i;
	return true;
}

const char *json_util_type_name_a(json_type type)
{
	switch (type) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "a list";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "a value";
}

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return (size_t)-1;
	size_t row[65];
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t best = diag + cost;
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

const char *json_util_suggest(const char *word, const char *const *candidates)
{
	const char *best = NULL;
	size_t best_d = 3, len = strlen(word);
	for (const char *const *c = candidates; c && *c; c++) {
		size_t d = edit_distance(word, *c);
		if (d < best_d && d * 2 < len) {
			best = *c;
			best_d = d;
		}
	}
	return best;
}

static void record_json_error(struct diag *diag, const json_error_t *err)
{
	if (err->line > 0)
		diag_add(diag, "", "line %d, column %d: invalid JSON: %s", err->line, err->column, err->text);
	else
		diag_add(diag, "", "invalid JSON: %s", err->text);
}

json_t *json_util_loadb(const char *text, size_t len, struct diag *diag)
{
	json_error_t err;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
	if (!root)
		record_json_error(diag, &err);
	return root;
}

int json_util_read_file(const char *path, size_t max, const char *what, char **text, size_t *len,
			struct diag *diag)
{
	int r = fileio_read(path, max, text, len);
	if (r == -EFBIG)
		diag_add(diag, "", "larger than %zu bytes (%zu MiB), the most %s may be", max, max >> 20,
			 what);
	else if (r < 0) /* what it is and reading it go wrong after open() */
		diag_add(diag, "", "cannot %s: %s",
			 r == -EISDIR || r == -EINVAL || r == -EIO ? "read" : "open", fileio_strerror(r));
	return r;
}

json_t *json_util_load_file(const char *path, size_t max, const char *what, struct diag *diag)
{
	char *text;
	size_t len;
	if (json_util_read_file(path, max, what, &text, &len, diag) < 0)
		return NULL;
	json_t *root = json_util_loadb(text, len, diag);
	free(text);
	return root;
}

void walk_init(struct json_walk *w, struct arena *arena, struct diag *diag)
{
	w->arena = arena;
	w->diag = diag;
	w->oom = false;
	jpath_init(&w->path);
}

void walk_error(struct json_walk *w, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r < 0) {
		w->diag->oom = 1;
		return;
	}
	diag_add(w->diag, w->path.buf, "%s", msg);
	free(msg);
}

bool walk_expect_type(struct json_walk *w, json_t *v, json_type type)
{
	/* An integer is a fine number; jansson keeps them apart. */
	if (json_typeof(v) == type || (type == JSON_REAL && json_is_integer(v)))
		return true;
	if ((type == JSON_TRUE || type == JSON_FALSE) && json_is_boolean(v))
		return true;
	walk_error(w, "expected %s, got %s", json_util_type_name_a(type),
		   json_util_type_name_a(json_typeof(v)));
	return false;
}

void walk_check_keys(struct json_walk *w, json_t *obj, const char *const *allowed,
		     const struct key_hint *hints)
{
	const char *key;
	json_t *v;
	json_object_foreach (obj, key, v) {
		bool ok = false;
		for (const char *const *a = allowed; *a; a++)
			ok |= strcmp(key, *a) == 0;
		if (ok)
			continue;
		size_t mark = jpath_push_key(&w->path, key);
		const char *hint = NULL;
		for (const struct key_hint *h = hints; h && h->key; h++) {
			if (strcmp(h->key, key) == 0)
				hint = h->hint;
		}
		const char *near = json_util_suggest(key, allowed);
		if (hint)
			walk_error(w, "unknown key \"%s\": %s", key, hint);
		else if (near)
			walk_error(w, "unknown key \"%s\" (did you mean \"%s\"?)", key, near);
		else
			walk_error(w, "unknown key \"%s\"", key);
		jpath_pop(&w->path, mark);
	}
}

const char *walk_take_string(struct json_walk *w, json_t *v)
{
	if (!walk_expect_type(w, v, JSON_STRING))
		return NULL;
	size_t len = json_string_length(v);
	if (strlen(json_string_value(v)) != len) {
		walk_error(w, "string contains a NUL character");
		return NULL;
	}
	char *s = arena_strndup(w->arena, json_string_value(v), len);
	if (!s)
		w->oom = true;
	return s;
}

void walk_description(struct json_walk *w, json_t *obj)
{
	json_t *v = json_object_get(obj, "description");
	if (!v)
		return;
	size_t mark = jpath_push_key(&w->path, "description");
	walk_expect_type(w, v, JSON_STRING);
	jpath_pop(&w->path, mark);
}

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct label *)a)->key, ((const struct label *)b)->key);
}

bool walk_labels(struct json_walk *w, json_t *obj, struct label_set *out)
{
	if (!walk_expect_type(w, obj, JSON_OBJECT))
		return false;
	bool ok = true;
	size_t n = json_object_size(obj), i = 0;
	out->v = arena_calloc(w->arena, n ? n : 1, sizeof(*out->v));
	if (!out->v) {
		w->oom = true;
		return false;
	}
	const char *key;
	json_t *v;
	json_object_foreach (obj, key, v) {
		size_t mark = jpath_push_key(&w->path, key);
		const char *why;
		const char *value = walk_take_string(w, v);
		if (!label_key_valid(key, &why)) {
			walk_error(w, "invalid label key \"%s\": %s", key, why);
			ok = false;
		} else if (!value) {
			ok = false;
		} else if (!label_value_valid(value, &why)) {
			walk_error(w, "invalid label value \"%s\": %s", value, why);
			ok = false;
		} else {
			out->v[i].key = arena_strdup(w->arena, key);
			out->v[i].value = value;
			if (!out->v[i].key)
				w->oom = true;
			i++;
		}
		jpath_pop(&w->path, mark);
	}
	out->n = i;
	qsort(out->v, out->n, sizeof(*out->v), label_cmp);
	return ok;
}

bool name_valid(const char *s, size_t max)
{
	size_t len = strlen(s);
	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
			return false;
	}
	return true;
}
