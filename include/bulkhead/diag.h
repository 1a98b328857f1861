/* Error lists for validation: every problem in one pass, each located by a
 * JSON pointer, printed as "FILE: /json/pointer: message". */
#pragma once

#include <stdio.h>

#include "bulkhead/common.h"

struct diag_entry {
	char *path; /* JSON pointer ("" for the whole document) */
	char *message;
};

struct diag {
	const char *file; /* borrowed; the name errors are reported under */
	struct diag_entry *v;
	size_t n, cap;
	int oom; /* set when an entry could not be recorded */
};

void diag_init(struct diag *d, const char *file);
void diag_release(struct diag *d);
void diag_add(struct diag *d, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* One line per entry: "FILE: /pointer: message", escaped (escape.h). */
void diag_print(const struct diag *d, FILE *out);

/* A JSON pointer built while walking a document: push a member or an index,
 * remember the returned mark, pop back to it. Tokens are escaped per
 * RFC 6901 (~ → ~0, / → ~1); an over-long pointer is cut, never overrun. */
struct jpath {
	char buf[512];
	size_t len;
};

void jpath_init(struct jpath *p);
size_t jpath_push_key(struct jpath *p, const char *key);
size_t jpath_push_index(struct jpath *p, size_t index);
void jpath_pop(struct jpath *p, size_t mark);
