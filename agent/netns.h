/* netns: sockets that live in another network namespace (a container's),
 * opened from the agent's own. */
#pragma once

#include "bulkhead/common.h"

struct mnl_socket;

/* Remembers the agent's own namespace, to come back to after each visit. */
struct netns;

/* NULL with errno set when /proc/self/ns/net cannot be opened. */
struct netns *netns_new(void);
void netns_free(struct netns *ns); /* accepts NULL */

/* Opens a netlink socket of bus (NETLINK_NETFILTER, NETLINK_ROUTE, …)
 * inside the namespace at path (/run/netns/NAME, /proc/PID/ns/net) and
 * binds it. A socket belongs to the namespace it was created in, so it
 * keeps talking to that namespace after we return to our own. The caller
 * owns *out (mnl_socket_close). 0 or a negative errno; -ENOENT when the
 * path is gone, -EINVAL when it is not a network namespace. */
BH_MUST_CHECK int netns_mnl_open(struct netns *ns, const char *path, int bus, struct mnl_socket **out);
/* The same, non-blocking and subscribed to the multicast groups bitmask
 * (e.g. 1 << (NFNLGRP_NFTABLES - 1)) for events. */
BH_MUST_CHECK int netns_mnl_open_groups(struct netns *ns, const char *path, int bus, unsigned groups,
					struct mnl_socket **out);

/* Runs fn(arg) inside the namespace at path, then returns to the agent's
 * own; sockets fn creates stay in that namespace. fn's result, or a
 * negative errno when the namespace cannot be entered. */
BH_MUST_CHECK int netns_run(struct netns *ns, const char *path, int (*fn)(void *arg), void *arg);

/* Which namespace a path names: the inode of its nsfs file. A path that
 * names a new namespace (a container restarted under the same name) has a
 * new identity. 0 or a negative errno (-ENOENT: gone). */
struct netns_id {
	unsigned long dev, ino;
};
BH_MUST_CHECK int netns_identify(const char *path, struct netns_id *out);
