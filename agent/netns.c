/* netns: sockets that live in another network namespace (a container's),
 * opened from the agent's own. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <libmnl/libmnl.h>

#include "netns.h"

struct netns {
	int self_fd; /* the agent's own network namespace */
};

struct netns *netns_new(void)
{
	struct netns *ns = calloc(1, sizeof(*ns));

	if (!ns)
		return NULL;
	ns->self_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (ns->self_fd < 0) {
		int e = errno;

		free(ns);
		errno = e;
		return NULL;
	}
	return ns;
}

void netns_free(struct netns *ns)
{
	if (!ns)
		return;
	close(ns->self_fd);
	free(ns);
}

/* Back home. Failing here would leave the whole (single-threaded) agent in
 * a container's namespace, where every later socket would silently land:
 * no way to continue safely. */
static void netns_return(struct netns *ns)
{
	if (setns(ns->self_fd, CLONE_NEWNET) < 0) {
		perror("bulkhead-agent: returning to own network namespace");
		abort();
	}
}

int netns_mnl_open(struct netns *ns, const char *path, int bus, struct mnl_socket **out)
{
	struct mnl_socket *nl;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (setns(fd, CLONE_NEWNET) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	close(fd);

	nl = mnl_socket_open2(bus, SOCK_CLOEXEC);
	if (!nl)
		ret = -errno;
	else if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
		ret = -errno;
	netns_return(ns);

	if (ret < 0) {
		if (nl)
			mnl_socket_close(nl);
		return ret;
	}
	*out = nl;
	return 0;
}
