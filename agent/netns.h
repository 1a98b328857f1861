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

/* Which namespace a path names: the inode of its nsfs file. A path that
 * names a new namespace (a container restarted under the same name) has a
 * new identity; two paths to one namespace (/run/netns/X and
 * /proc/PID/ns/net of a process in it) have the same. */
struct netns_id {
	unsigned long dev, ino;
};

/* Opens the network namespace at path (an inventory's word, so hostile):
 * the path is resolved once, and the fd returned is what every later
 * identity check and setns uses. Nothing at path is opened for real
 * before it is known to be a namespace file (a FIFO would block, a device
 * may act on open). Sets *id. Returns the fd (the caller closes it) or a
 * negative errno:
 *   -ENOENT  nothing there (yet), or an empty file: the mount point that
 *            `ip netns add` and container engines make before they
 *            bind-mount the namespace on it
 *   -EINVAL  not a network namespace (no nsfs file, or another kind of
 *            namespace such as /proc/PID/ns/mnt)
 *   -ELOOP   the agent's own network namespace (firewalling it would
 *            firewall the node itself) */
BH_MUST_CHECK int netns_open(struct netns *ns, const char *path, struct netns_id *id);
/* The same checks for a namespace already open (the OCI hook's, passed
 * over its socket): fd is borrowed; returns a new fd of the agent's own
 * (close-on-exec), or -EINVAL, -ELOOP as above. */
BH_MUST_CHECK int netns_open_fd(struct netns *ns, int fd, struct netns_id *id);
/* Which network namespace fd is (no check that it is not ours): 0, or
 * -EINVAL when fd is not a network namespace file. */
BH_MUST_CHECK int netns_fd_identify(int fd, struct netns_id *out);

/* Why netns_open failed, for an endpoint's error: "PATH is not a network
 * namespace …". Writes at most size bytes to buf and returns buf. */
const char *netns_open_error(int err, const char *path, char *buf, size_t size);

/* Opens a netlink socket of bus (NETLINK_NETFILTER, NETLINK_ROUTE, …)
 * inside the namespace nsfd (from netns_open) and binds it. A socket
 * belongs to the namespace it was created in, so it keeps talking to that
 * namespace after we return to our own. The caller owns *out
 * (mnl_socket_close). 0 or a negative errno. */
BH_MUST_CHECK int netns_mnl_open(struct netns *ns, int nsfd, int bus, struct mnl_socket **out);
/* The same, non-blocking and subscribed to the multicast groups bitmask
 * (e.g. 1 << (NFNLGRP_NFTABLES - 1)) for events. */
BH_MUST_CHECK int netns_mnl_open_groups(struct netns *ns, int nsfd, int bus, unsigned groups,
					struct mnl_socket **out);

/* Runs fn(arg) inside the namespace nsfd, then returns to the agent's
 * own; sockets fn creates stay in that namespace. fn's result, or a
 * negative errno when the namespace cannot be entered. */
BH_MUST_CHECK int netns_run(struct netns *ns, int nsfd, int (*fn)(void *arg), void *arg);

/* What path names now, without opening it (cheap: for a periodic check).
 * 0 or a negative errno (-ENOENT: gone). */
BH_MUST_CHECK int netns_identify(const char *path, struct netns_id *out);

/* An fd that polls EPOLLPRI when the agent's mount table changes; the
 * caller owns it and need not read it. Named namespaces are bind mounts
 * (`ip netns add`, container engines' netns files), so a namespace made,
 * removed or made anew at a path shows here at once. Negative errno. */
BH_MUST_CHECK int netns_mounts_watch(void);
