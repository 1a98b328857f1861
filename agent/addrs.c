/* Address tracking with libnl-3's cache manager (see addrs.h). The manager
 * and its sockets are created inside the endpoint's namespace, so its dumps
 * and notifications are that namespace's. */
#include <errno.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>

#include <netlink/cache.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>

#include "addrs.h"
#include "bulkhead/log.h"

struct addrs {
	struct nl_cache_mngr *mngr;
	struct nl_cache *links, *addrs;
	struct bh_addr *list;
	size_t n, cap;
	struct bh_addr *all; /* every address, any scope or interface */
	size_t n_all, cap_all;
};

struct addrs_open_args {
	struct addrs *a;
	int err; /* libnl error code */
};

static int addrs_open_here(void *arg)
{
	struct addrs_open_args *o = arg;
	struct addrs *a = o->a;
	/* No NL_AUTO_PROVIDE: it registers the caches process-wide, and each
	 * namespace has its own manager; the last would win for all. */
	o->err = nl_cache_mngr_alloc(NULL, NETLINK_ROUTE, 0, &a->mngr);
	if (o->err == 0)
		o->err = nl_cache_mngr_add(a->mngr, "route/link", NULL, NULL, &a->links);
	if (o->err == 0)
		o->err = nl_cache_mngr_add(a->mngr, "route/addr", NULL, NULL, &a->addrs);
	return o->err ? -EIO : 0;
}

static void append(struct bh_addr **v, size_t *n, size_t *cap, const struct bh_addr *ba)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		*v = xrealloc(*v, *cap * sizeof(**v));
	}
	(*v)[(*n)++] = *ba;
}

static void addrs_collect_one(struct nl_object *obj, void *arg)
{
	struct addrs *a = arg;
	struct rtnl_addr *ra = (struct rtnl_addr *)obj;
	struct nl_addr *local = rtnl_addr_get_local(ra);
	int family = rtnl_addr_get_family(ra);
	if (!local || (family != AF_INET && family != AF_INET6) ||
	    nl_addr_get_len(local) != (family == AF_INET ? 4u : 16u))
		return;
	struct bh_addr ba = {.family = (uint8_t)family};
	memcpy(ba.bytes, nl_addr_get_binary_addr(local), nl_addr_get_len(local));
	append(&a->all, &a->n_all, &a->cap_all, &ba);
	if (rtnl_addr_get_scope(ra) != RT_SCOPE_UNIVERSE)
		return;
	struct rtnl_link *link = rtnl_link_get(a->links, rtnl_addr_get_ifindex(ra));
	unsigned flags = link ? rtnl_link_get_flags(link) : 0;
	if (link)
		rtnl_link_put(link);
	if (!(flags & IFF_UP) || (flags & IFF_LOOPBACK))
		return;
	append(&a->list, &a->n, &a->cap, &ba);
}

static int addr_sort(const void *x, const void *y)
{
	return addr_cmp(x, y);
}

/* Recomputes the list; true when it differs from before. */
static bool addrs_collect(struct addrs *a)
{
	struct bh_addr *old = a->list;
	size_t old_n = a->n;
	a->list = NULL;
	a->n = a->cap = 0;
	a->n_all = 0;
	nl_cache_foreach(a->addrs, addrs_collect_one, a);
	if (a->n > 1)
		qsort(a->list, a->n, sizeof(*a->list), addr_sort);
	if (a->n_all > 1)
		qsort(a->all, a->n_all, sizeof(*a->all), addr_sort);
	bool changed = old_n != a->n || (a->n && memcmp(old, a->list, a->n * sizeof(*a->list)) != 0);
	free(old);
	return changed;
}

struct addrs *addrs_open(struct netns *ns, int nsfd)
{
	struct addrs *a = xcalloc(1, sizeof(*a));
	struct addrs_open_args o = {.a = a};
	int r = netns_run(ns, nsfd, addrs_open_here, &o);
	if (r < 0) {
		if (o.err)
			log_debug("libnl: %s", nl_geterror(o.err));
		addrs_free(a);
		errno = -r;
		return NULL;
	}
	addrs_collect(a);
	return a;
}

void addrs_free(struct addrs *a)
{
	if (!a)
		return;
	if (a->mngr)
		nl_cache_mngr_free(a->mngr); /* frees the caches it manages */
	free(a->list);
	free(a->all);
	free(a);
}

int addrs_fd(const struct addrs *a)
{
	return nl_cache_mngr_get_fd(a->mngr);
}

int addrs_dispatch(struct addrs *a)
{
	int r = nl_cache_mngr_data_ready(a->mngr);
	if (r < 0) {
		log_debug("libnl notifications: %s", nl_geterror(r));
		return -EIO;
	}
	return addrs_collect(a) ? 1 : 0;
}

const struct bh_addr *addrs_list(const struct addrs *a, size_t *n)
{
	*n = a->n;
	return a->list;
}

const struct bh_addr *addrs_all(const struct addrs *a, size_t *n)
{
	*n = a->n_all;
	return a->all;
}
