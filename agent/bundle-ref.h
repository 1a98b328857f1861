/* bundle-ref: a bundle shared by the core (the bundle in force) and every
 * endpoint whose table was built from it; the previous one lives on while
 * an endpoint still holds its table (the base of its next delta). */
#pragma once

#include <stdint.h>
#include <stdlib.h>

#include "bulkhead/bundle.h"
#include "bulkhead/log.h"

struct bundle_ref {
	struct bundle *b;
	unsigned refs;
	uint64_t serial;  /* this agent's order of bundles, written into tables (nft_tag) */
	int64_t revision; /* the controller's; 0: a bundle file */
};

/* Takes ownership of b; one reference. */
static inline struct bundle_ref *bundle_ref_new(struct bundle *b)
{
	struct bundle_ref *r = xcalloc(1, sizeof(*r));
	r->b = b;
	r->refs = 1;
	return r;
}

static inline struct bundle_ref *bundle_ref_get(struct bundle_ref *r)
{
	if (r)
		r->refs++;
	return r;
}

static inline void bundle_ref_put(struct bundle_ref *r)
{
	if (r && --r->refs == 0) {
		bundle_free(r->b);
		free(r);
	}
}
