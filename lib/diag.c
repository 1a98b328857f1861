/* Validation error lists (see diag.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/diag.h"
#include "bulkhead/escape.h"

void diag_init(struct diag *d, const char *file)
{
	memset(d, 0, sizeof(*d));
	d->file = file;
}

void diag_release(struct diag *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->v[i].path);
		free(d->v[i].message);
	}
	free(d->v);
	d->v = NULL;
	d->n = d->cap = 0;
}

void diag_add(struct diag *d, const char *path, const char *fmt, ...)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		struct diag_entry *v = realloc(d->v, cap * sizeof(*v));
		if (!v) {
			d->oom = 1;
			return;
		}
		d->v = v;
		d->cap = cap;
	}
	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	char *p = strdup(path ? path : "");
	if (r < 0 || !p) {
		free(p);
		if (r >= 0)
			free(msg);
		d->oom = 1;
		return;
	}
	d->v[d->n].path = p;
	d->v[d->n].message = msg;
	d->n++;
}

void diag_print(const struct diag *d, FILE *out)
{
	/* Escaped: a document from a peer (an agent's endpoint list) quotes
	 * its own bad names back. */
	char file[ESCAPE_BUF];
	escape_text(file, sizeof(file), d->file ? d->file : "<input>");
	for (size_t i = 0; i < d->n; i++) {
		char *path = escape_dup(d->v[i].path), *msg = escape_dup(d->v[i].message);
		if (!path || !msg)
			fprintf(out, "%s: out of memory while printing an error\n", file);
		else if (path[0])
			fprintf(out, "%s: %s: %s\n", file, path, msg);
		else
			fprintf(out, "%s: %s\n", file, msg);
		free(path);
		free(msg);
	}
	if (d->oom)
		fprintf(out, "%s: out of memory while recording errors; some are missing\n", file);
}

void jpath_init(struct jpath *p)
{
	p->buf[0] = '\0';
	p->len = 0;
}

static void jpath_append(struct jpath *p, const char *s, size_t n)
{
	/* Keep room for the terminator; cut silently when full. */
	size_t room = sizeof(p->buf) - 1 - p->len;
	if (n > room)
		n = room;
	memcpy(p->buf + p->len, s, n);
	p->len += n;
	p->buf[p->len] = '\0';
}

size_t jpath_push_key(struct jpath *p, const char *key)
{
	size_t mark = p->len;
	jpath_append(p, "/", 1);
	for (const char *k = key; *k; k++) {
		if (*k == '~')
			jpath_append(p, "~0", 2);
		else if (*k == '/')
			jpath_append(p, "~1", 2);
		else
			jpath_append(p, k, 1);
	}
	return mark;
}

size_t jpath_push_index(struct jpath *p, size_t index)
{
	size_t mark = p->len;
	char num[24];
	int n = snprintf(num, sizeof(num), "/%zu", index);
	jpath_append(p, num, (size_t)n);
	return mark;
}

void jpath_pop(struct jpath *p, size_t mark)
{
	if (mark <= p->len) {
		p->len = mark;
		p->buf[mark] = '\0';
	}
}
