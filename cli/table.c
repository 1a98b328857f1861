/* The verbs' text tables (see table.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/escape.h"
#include "bulkhead/log.h"
#include "table.h"

#define TABLE_MAX_COLS 16

struct table {
	char **cells;
	size_t cols, n;
};

struct table *table_new(size_t cols)
{
	if (cols < 1 || cols > TABLE_MAX_COLS)
		abort();
	struct table *t = xcalloc(1, sizeof(*t));
	t->cols = cols;
	return t;
}

void table_add(struct table *t, ...)
{
	va_list ap;
	va_start(ap, t);
	t->cells = xrealloc(t->cells, (t->n + t->cols) * sizeof(*t->cells));
	for (size_t i = 0; i < t->cols; i++) {
		const char *s = va_arg(ap, const char *);
		if (!(t->cells[t->n++] = escape_dup(s ? s : "-")))
			abort();
	}
	va_end(ap);
}

void table_print(struct table *t)
{
	size_t w[TABLE_MAX_COLS] = {0};
	for (size_t i = 0; i < t->n; i++)
		if (strlen(t->cells[i]) > w[i % t->cols])
			w[i % t->cols] = strlen(t->cells[i]);
	for (size_t i = 0; i < t->n; i++) {
		if (i % t->cols == t->cols - 1)
			printf("%s\n", t->cells[i]);
		else
			printf("%-*s  ", (int)w[i % t->cols], t->cells[i]);
	}
	for (size_t i = 0; i < t->n; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}
