/* The quarantine table (quarantine.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/arena.h"
#include "bulkhead/log.h"
#include "quarantine.h"

struct bundle *quarantine_bundle(const char *name)
{
	struct arena *arena = arena_new();
	struct bundle *b = arena ? arena_calloc(arena, 1, sizeof(*b)) : NULL;
	struct bundle_endpoint *ep = b ? arena_calloc(arena, 1, sizeof(*ep)) : NULL;
	if (!ep)
		abort();
	b->arena = arena;
	b->node = arena_strdup(arena, "");
	ep->name = arena_strdup(arena, name);
	ep->addrs = arena_calloc(arena, 1, sizeof(*ep->addrs));
	if (!b->node || !ep->name || !ep->addrs)
		abort();
	for (int d = 0; d < DIR_COUNT; d++)
		ep->chains[d] =
		    (struct bundle_chain){.fallback = VERDICT_DROP, .fallback_reason = QUARANTINE_RULE};
	b->endpoints = ep;
	b->n_endpoints = 1;
	if (bundle_update_hash(b) < 0)
		abort();
	return b;
}

void quarantine_tag(const struct bundle *b, struct nft_tag *out)
{
	*out = (struct nft_tag){.serial = 0, .revision = 0};
	memcpy(out->hash, b->hash, sizeof(out->hash));
}

int quarantine_put(struct dataplane_ep *ep, const char *name, char *err, size_t errlen)
{
	struct bundle *b = quarantine_bundle(name);
	struct nft_tag tag;
	struct dataplane_result res;
	quarantine_tag(b, &tag);
	struct dataplane_apply req = {.name = name, .b = b, .ep = &b->endpoints[0], .tag = &tag};
	int r = dataplane_apply(ep, &req, &res);
	if (r < 0)
		snprintf(err, errlen, "quarantine table: %s", res.error);
	bundle_free(b);
	return r;
}
