/* table: the verbs' text listings: rows of cells, printed in columns as
 * wide as their widest cell, every cell escaped (escape.h: what the
 * controller relays of the agents reaches the terminal only so). */
#pragma once

#include <stddef.h>

struct table;

/* A table of cols columns (at most 16). Aborts when out of memory. */
struct table *table_new(size_t cols);
/* One row: cols strings (NULL reads "-"), copied escaped. */
void table_add(struct table *t, ...);
/* Prints t on stdout and frees it (takes ownership of t). */
void table_print(struct table *t);
