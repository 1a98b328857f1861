/* netns: sockets that live in another network namespace (a container's),
 * opened from the agent's own. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <libmnl/libmnl.h>

#include "netns.h"

struct netns {
	int self_fd; /* the agent's own network namespace */
	struct netns_id self;
};

struct netns *netns_new(void)
{
	struct netns *ns = calloc(1, sizeof(*ns));
	struct stat st;

	if (!ns)
		return NULL;
	ns->self_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (ns->self_fd < 0 || fstat(ns->self_fd, &st) < 0) {
		int e = errno;

		if (ns->self_fd >= 0)
			close(ns->self_fd);
		free(ns);
		errno = e;
		return NULL;
	}
	ns->self.dev = st.st_dev;
	ns->self.ino = st.st_ino;
	return ns;
}

void netns_free(struct netns *ns)
{
	if (!ns)
		return;
	close(ns->self_fd);
	free(ns);
}

/* The checks of an open namespace file: a network namespace, not ours. */
static int netns_check(struct netns *ns, int fd, struct netns_id *id)
{
	struct stat st;
	/* Kernels before 4.11 do not say (ENOTTY); setns checks it then. */
	int type = ioctl(fd, NS_GET_NSTYPE);
	if (type >= 0 && type != CLONE_NEWNET)
		return -EINVAL;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_dev == ns->self.dev && st.st_ino == ns->self.ino)
		return -ELOOP;
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	return 0;
}

int netns_open(struct netns *ns, const char *path, struct netns_id *id)
{
	/* O_PATH resolves the path without opening what it names, so a FIFO
	 * cannot block us and a device cannot act on an open. */
	int pfd = open(path, O_PATH | O_CLOEXEC);
	if (pfd < 0)
		return -errno;
	struct statfs sfs;
	struct stat st;
	int ret = fstatfs(pfd, &sfs) < 0 ? -errno : sfs.f_type != NSFS_MAGIC ? -EINVAL : 0;
	/* `ip netns add` and container engines create an empty file, then
	 * bind-mount the namespace on it: not yet there, rather than wrong. */
	if (ret == -EINVAL && fstat(pfd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0)
		ret = -ENOENT;
	if (ret < 0) {
		close(pfd);
		return ret;
	}
	/* setns and ioctl need a real open. Through the fd's own /proc link,
	 * not the path again: it reaches the file pfd holds, whatever has
	 * been mounted at path since. */
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", pfd);
	int fd = open(self, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	ret = fd < 0 ? -errno : 0;
	close(pfd);
	if (ret < 0)
		return ret;
	ret = netns_check(ns, fd, id);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	return fd;
}

int netns_open_fd(struct netns *ns, int fd, struct netns_id *id)
{
	struct statfs sfs;
	if (fstatfs(fd, &sfs) < 0)
		return -errno;
	if (sfs.f_type != NSFS_MAGIC)
		return -EINVAL;
	int own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (own < 0)
		return -errno;
	int ret = netns_check(ns, own, id);
	if (ret < 0) {
		close(own);
		return ret;
	}
	return own;
}

int netns_fd_identify(int fd, struct netns_id *out)
{
	struct statfs sfs;
	struct stat st;
	if (fstatfs(fd, &sfs) < 0 || fstat(fd, &st) < 0)
		return -errno;
	if (sfs.f_type != NSFS_MAGIC)
		return -EINVAL;
	int type = ioctl(fd, NS_GET_NSTYPE);
	if (type >= 0 && type != CLONE_NEWNET)
		return -EINVAL;
	out->dev = st.st_dev;
	out->ino = st.st_ino;
	return 0;
}

const char *netns_open_error(int err, const char *path, char *buf, size_t size)
{
	if (err == -EINVAL)
		snprintf(buf, size, "%s is not a network namespace (%s)", path,
			 "an nsfs file such as /run/netns/NAME or /proc/PID/ns/net");
	else if (err == -ELOOP)
		snprintf(buf, size, "%s is the agent's own network namespace: %s", path,
			 "refused (its table would firewall the node)");
	else if ((err == -EACCES || err == -EPERM) && strncmp(path, "/proc/", 6) == 0)
		/* The kernel asks for ptrace read access to the process. */
		snprintf(buf, size, "opening namespace %s: %s (%s)", path, strerror(-err),
			 "a process's namespace by /proc needs CAP_SYS_PTRACE unless it runs as root with no "
			 "capability the agent lacks: bulkhead-agent --cap-ptrace, or a bind mount such as "
			 "`ip netns attach NAME PID`");
	else
		snprintf(buf, size, "opening namespace %s: %s", path, strerror(-err));
	return buf;
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

int netns_run(struct netns *ns, int nsfd, int (*fn)(void *arg), void *arg)
{
	if (setns(nsfd, CLONE_NEWNET) < 0)
		return -errno;
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

int netns_mnl_open_groups(struct netns *ns, int nsfd, int bus, unsigned groups, struct mnl_socket **out)
{
	struct mnl_open_args a = {.bus = bus, .groups = groups};
	int ret = netns_run(ns, nsfd, mnl_open_here, &a);
	if (ret < 0)
		return ret;
	*out = a.nl;
	return 0;
}

int netns_mnl_open(struct netns *ns, int nsfd, int bus, struct mnl_socket **out)
{
	return netns_mnl_open_groups(ns, nsfd, bus, 0, out);
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

int netns_mounts_watch(void)
{
	/* The kernel flags this file (POLLPRI) on every mount and unmount
	 * in our mount namespace; polling it clears the flag. inotify would
	 * not do: a bind mount over a file is no directory event. */
	int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}
