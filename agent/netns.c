/* netns: sockets that live in another network namespace (a container's),
 * opened from the agent's own. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
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

int netns_run(struct netns *ns, const char *path, int (*fn)(void *arg), void *arg)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (setns(fd, CLONE_NEWNET) < 0) {
		int ret = errno == EINVAL ? -EINVAL : -errno;
		close(fd);
		return ret;
	}
	close(fd);
	int ret = fn(arg);
	netns_return(ns);
	return ret;
}

struct mnl_open_args {
	int bus;
	unsigned groups;
	struct mnl_socket *nl;
};

static int mnl_open_here(void *arg)
{
	struct mnl_open_args *a = arg;
	/* Event sockets must never block the loop; request sockets may. */
	a->nl = mnl_socket_open2(a->bus, SOCK_CLOEXEC | (a->groups ? SOCK_NONBLOCK : 0));
	if (!a->nl)
		return -errno;
	if (mnl_socket_bind(a->nl, a->groups, MNL_SOCKET_AUTOPID) < 0) {
		int ret = -errno;
		mnl_socket_close(a->nl);
		a->nl = NULL;
		return ret;
	}
	return 0;
}

int netns_mnl_open_groups(struct netns *ns, const char *path, int bus, unsigned groups, struct mnl_socket **out)
{
	struct mnl_open_args a = {.bus = bus, .groups = groups};
	int ret = netns_run(ns, path, mnl_open_here, &a);
	if (ret < 0)
		return ret;
	*out = a.nl;
	return 0;
}

int netns_mnl_open(struct netns *ns, const char *path, int bus, struct mnl_socket **out)
{
	return netns_mnl_open_groups(ns, path, bus, 0, out);
}

int netns_identify(const char *path, struct netns_id *out)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return -errno;
	out->dev = st.st_dev;
	out->ino = st.st_ino;
	return 0;
}
