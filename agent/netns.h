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
