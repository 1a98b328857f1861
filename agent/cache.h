/* cache: the bundle in force, kept in the state directory so that a
 * restart enforces it before any controller answers (fail-static). The
 * first of the bundle sources (source.h): read once at start; the core
 * writes to it whenever the bundle in force changes. bundle.json holds the
 * bundle, the revision file "REVISION SERIAL HASH" what bundle.json is. A
 * write that fails is kept as an error (status.json, every ACK) and tried
 * again. Written with fsync: it must survive a crash. */
#pragma once

#include <stdint.h>

#include <jansson.h>

#include "bulkhead/bundle.h"
#include "bulkhead/common.h"

struct cache;

/* dir NULL: no cache (loads find nothing, stores do nothing). */
struct cache *cache_new(const char *dir, const char *node);
void cache_free(struct cache *c); /* accepts NULL */

/* The cached bundle for node, its revision (0: unknown) and serial (0:
 * unknown). 0 with *b NULL when there is none; -EINVAL when it is there
 * and refused (logged), another negative errno when unreadable (logged). */
BH_MUST_CHECK int cache_load(struct cache *c, struct bundle **b, int64_t *revision, uint64_t *serial);

/* Makes b (revision, serial) what the cache holds; b is borrowed. */
void cache_store(struct cache *c, const struct bundle *b, int64_t revision, uint64_t serial, uint64_t now_ms);
/* After a failed store, stores again when it is due (b as above). */
void cache_retry(struct cache *c, const struct bundle *b, int64_t revision, uint64_t serial, uint64_t now_ms);

/* Why the bundle in force is not cached, or NULL. */
const char *cache_error(const struct cache *c);
/* {"bundle", "revision", "error"} for status.json; NULL without a dir. */
json_t *cache_status(const struct cache *c);
