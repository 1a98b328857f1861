/* Rule hit counts as growth between readings (see counters.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/log.h"
#include "counters.h"

struct reading {
	uint64_t handle, packets, bytes;
};

struct counters {
	struct reading *last; /* sorted by handle */
	size_t n_last;
	bool first_done; /* a reading was taken this run */
};

struct counters *counters_new(void)
{
	return xcalloc(1, sizeof(struct counters));
}

void counters_free(struct counters *c)
{
	if (!c)
		return;
	free(c->last);
	free(c);
}

static int cmp_reading(const void *a, const void *b)
{
	const struct reading *x = a, *y = b;
	return x->handle < y->handle ? -1 : x->handle > y->handle;
}

static const struct reading *find_last(const struct counters *c, uint64_t handle)
{
	struct reading key = {.handle = handle};
	if (!c->n_last)
		return NULL;
	return bsearch(&key, c->last, c->n_last, sizeof(*c->last), cmp_reading);
}

/* Growth summed per (direction, comment); tables have a few hundred rules,
 * so a linear search is cheap. */
struct sum {
	enum direction dir;
	const char *rule;
	uint64_t packets, bytes;
};

void counters_update(struct counters *c, const struct nft_rule_counter *list, size_t n, counters_fn fn,
		     void *arg)
{
	struct reading *now = n ? xcalloc(n, sizeof(*now)) : NULL;
	struct sum *sums = n ? xcalloc(n, sizeof(*sums)) : NULL;
	size_t n_sums = 0;
	for (size_t i = 0; i < n; i++) {
		const struct nft_rule_counter *r = &list[i];
		now[i] = (struct reading){r->handle, r->packets, r->bytes};
		const struct reading *was = find_last(c, r->handle);
		uint64_t dp, db;
		if (was && r->packets >= was->packets && r->bytes >= was->bytes) {
			dp = r->packets - was->packets;
			db = r->bytes - was->bytes;
		} else if (was || c->first_done) {
			dp = r->packets; /* reset, or a rule made since the last reading */
			db = r->bytes;
		} else {
			continue; /* a table from before this run: baseline only */
		}
		if (!r->comment || (!dp && !db))
			continue;
		if (dp > COUNTERS_GROWTH_MAX || db > COUNTERS_GROWTH_MAX * 65536) {
			log_warn("rule \"%s\": its counter jumped by %llu packets; not counted", r->comment,
				 (unsigned long long)dp);
			continue;
		}
		size_t k = 0;
		while (k < n_sums && !(sums[k].dir == r->dir && strcmp(sums[k].rule, r->comment) == 0))
			k++;
		if (k == n_sums)
			sums[n_sums++] = (struct sum){.dir = r->dir, .rule = r->comment};
		sums[k].packets += dp;
		sums[k].bytes += db;
	}
	for (size_t k = 0; k < n_sums; k++) {
		struct counter_growth g = {sums[k].dir, sums[k].rule, sums[k].packets, sums[k].bytes};
		fn(arg, &g);
	}
	free(sums);
	if (n)
		qsort(now, n, sizeof(*now), cmp_reading);
	free(c->last);
	c->last = now;
	c->n_last = n;
	c->first_done = true;
}

void counters_table_replaced(struct counters *c)
{
	free(c->last);
	c->last = NULL;
	c->n_last = 0;
	c->first_done = true;
}

struct collect {
	struct nft_rule_counter *v;
	char **comments;
	size_t n, cap;
};

static void collect_one(void *arg, const struct nft_rule_counter *r)
{
	struct collect *col = arg;
	if (col->n == col->cap) {
		col->cap = col->cap ? col->cap * 2 : 64;
		col->v = xrealloc(col->v, col->cap * sizeof(*col->v));
		col->comments = xrealloc(col->comments, col->cap * sizeof(*col->comments));
	}
	col->comments[col->n] = r->comment ? xstrdup(r->comment) : NULL;
	col->v[col->n] = *r;
	col->v[col->n].comment = col->comments[col->n];
	col->n++;
}

int counters_read(struct counters *c, struct mnl_socket *nl, counters_fn fn, void *arg)
{
	struct collect col = {0};
	int r = nft_read_counters(nl, collect_one, &col);
	if (r == 0)
		counters_update(c, col.v, col.n, fn, arg);
	for (size_t i = 0; i < col.n; i++)
		free(col.comments[i]);
	free(col.comments);
	free(col.v);
	return r;
}

json_t *counters_save(const struct counters *c)
{
	json_t *out = json_array();
	for (size_t i = 0; i < c->n_last; i++)
		json_array_append_new(out, json_pack("[I,I,I]", (json_int_t)c->last[i].handle,
						     (json_int_t)c->last[i].packets,
						     (json_int_t)c->last[i].bytes));
	return out;
}

int counters_load(struct counters *c, const json_t *saved)
{
	if (!json_is_array(saved))
		return -EINVAL;
	size_t n = json_array_size(saved);
	struct reading *v = n ? xcalloc(n, sizeof(*v)) : NULL;
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(saved, i);
		const json_t *h = json_array_get(e, 0), *p = json_array_get(e, 1), *b = json_array_get(e, 2);
		if (json_array_size(e) != 3 || !json_is_integer(h) || !json_is_integer(p) ||
		    !json_is_integer(b) || json_integer_value(h) < 0 || json_integer_value(p) < 0 ||
		    json_integer_value(b) < 0) {
			free(v);
			return -EINVAL;
		}
		v[i] = (struct reading){(uint64_t)json_integer_value(h), (uint64_t)json_integer_value(p),
					(uint64_t)json_integer_value(b)};
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_reading);
	free(c->last);
	c->last = v;
	c->n_last = n;
	return 0;
}
