/* The null dataplane (dataplane.h): every batch is built as the nft
 * dataplane builds it, and nothing reaches the kernel, so one machine can
 * run many agents for scale tests (--dataplane null). Namespaces are not
 * opened: every endpoint is present, with no identity and no addresses of
 * its own (its source's stand). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "bulkhead/log.h"
#include "dataplane.h"

struct null_dp {
	struct dataplane dp;
	struct nft_batch *nb;
};

static int null_open(struct dataplane *dp, const char *name, const char *path, struct dataplane_ep **out,
		     struct netns_id *id, char *err, size_t errlen)
{
	struct dataplane_ep *ep = xcalloc(1, sizeof(*ep));
	ep->dp = dp;
	*id = (struct netns_id){0};
	*out = ep;
	return 0;
}

static int null_attach(struct dataplane_ep *ep, unsigned flags, const struct dataplane_events *ev, void *data,
		       char *err, size_t errlen)
{
	return 0;
}

static void null_close(struct dataplane_ep *ep)
{
	free(ep);
}

static int null_identify(struct dataplane *dp, const char *path, struct netns_id *id)
{
	*id = (struct netns_id){0};
	return 0;
}

static int null_read_tag(struct dataplane_ep *ep, struct nft_tag *out)
{
	return -ENOENT;
}

static int null_apply(struct dataplane_ep *ep, const struct dataplane_apply *req,
		      struct dataplane_result *res)
{
	struct nft_batch *nb = ((struct null_dp *)ep->dp)->nb;
	bool full = true;
	*res = (struct dataplane_result){.full = true};
	nft_batch_set_tag(nb, req->tag);
	int r = req->old_ep ? nft_batch_build_update(nb, req->old_b, req->old_ep, req->b, req->ep, &full)
			    : nft_batch_build(nb, req->b, req->ep);
	res->full = full;
	if (r < 0) {
		snprintf(res->error, sizeof(res->error), "%s", nft_batch_error(nb));
		return r;
	}
	nft_batch_stats(nb, &res->stats);
	if (full)
		res->full_commits++;
	else
		res->delta_commits++;
	return 0;
}

static int null_verify(struct dataplane_ep *ep, const struct bundle *b, const struct bundle_endpoint *bep,
		       const struct nft_tag *tag, bool *read, char *why, size_t whylen)
{
	*read = false;
	return 1; /* nothing in the kernel to differ */
}

static void null_free(struct dataplane *dp)
{
	nft_batch_free(((struct null_dp *)dp)->nb);
	free(dp);
}

static const struct dataplane_ops null_ops = {
    .name = "null",
    .free = null_free,
    .open = null_open,
    .attach = null_attach,
    .close = null_close,
    .identify = null_identify,
    .read_tag = null_read_tag,
    .apply = null_apply,
    .verify = null_verify,
};

struct dataplane *dataplane_null_new(uint16_t nflog_group)
{
	struct null_dp *dp = xcalloc(1, sizeof(*dp));
	dp->dp.ops = &null_ops;
	dp->nb = nft_batch_new(nflog_group);
	if (!dp->nb)
		abort();
	return &dp->dp;
}
