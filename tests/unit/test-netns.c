/* What netns_open (agent/netns.h) makes of an inventory's netns path that is
 * not a network namespace: no root needed, nothing entered. A FIFO must not
 * block it; the agent's own namespace is refused by its identity, whatever
 * the path. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "netns.h"
#include "test.h"

static char dir[] = "/tmp/test-netns.XXXXXX";

static int try_open(const char *path)
{
	struct netns *ns = netns_new();
	struct netns_id id = {1, 1};
	CHECK(ns != NULL);
	if (!ns)
		return 0;
	int fd = netns_open(ns, path, &id);
	if (fd >= 0)
		close(fd);
	else
		CHECK(id.dev == 1 && id.ino == 1); /* untouched on failure */
	netns_free(ns);
	return fd < 0 ? fd : 0;
}

static const char *in_dir(const char *name)
{
	static char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

TEST(fifo_is_refused_without_blocking)
{
	CHECK(mkfifo(in_dir("fifo"), 0600) == 0);
	alarm(10); /* a blocking open would hang the test: fail it instead */
	CHECK(try_open(in_dir("fifo")) == -EINVAL);
	alarm(0);
}

TEST(file_directory_and_device_are_not_namespaces)
{
	FILE *f = fopen(in_dir("file"), "w");
	CHECK(f != NULL);
	if (f) {
		fputs("not a namespace\n", f);
		fclose(f);
	}
	CHECK(try_open(in_dir("file")) == -EINVAL);
	CHECK(try_open(dir) == -EINVAL);
	CHECK(try_open("/dev/null") == -EINVAL);
}

TEST(another_kind_of_namespace_is_refused)
{
	CHECK(try_open("/proc/self/ns/mnt") == -EINVAL);
	CHECK(try_open("/proc/self/ns/uts") == -EINVAL);
}

TEST(missing_path_and_empty_mount_point_are_not_there_yet)
{
	CHECK(try_open(in_dir("missing")) == -ENOENT);
	int fd = open(in_dir("empty"), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
	CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
	CHECK(try_open(in_dir("empty")) == -ENOENT);
}

TEST(own_namespace_is_refused_by_identity)
{
	char path[64];
	CHECK(try_open("/proc/self/ns/net") == -ELOOP);
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)getpid());
	CHECK(try_open(path) == -ELOOP);
	/* Through a symlink of our own: still the same namespace. */
	CHECK(symlink("/proc/self/ns/net", in_dir("link")) == 0);
	CHECK(try_open(in_dir("link")) == -ELOOP);
}

TEST(errors_name_the_path_and_the_problem)
{
	char buf[512];
	const char *not_net = "/tmp/x is not a network namespace (an nsfs file such as /run/netns/NAME or "
			      "/proc/PID/ns/net)";
	const char *own = "/proc/self/ns/net is the agent's own network namespace: refused (its table would "
			  "firewall the node)";
	CHECK_STR(netns_open_error(-EINVAL, "/tmp/x", buf, sizeof(buf)), not_net);
	CHECK_STR(netns_open_error(-ELOOP, "/proc/self/ns/net", buf, sizeof(buf)), own);
	CHECK_STR(netns_open_error(-EACCES, "/x", buf, sizeof(buf)),
		  "opening namespace /x: Permission denied");
}

TEST(mount_table_watch_is_quiet_until_a_mount)
{
	int fd = netns_mounts_watch();
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	struct pollfd p = {.fd = fd, .events = POLLPRI};
	CHECK(poll(&p, 1, 0) == 0);
	close(fd);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	int r = test_main();
	const char *names[] = {"fifo", "file", "empty", "link"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlink(in_dir(names[i]));
	rmdir(dir);
	return r;
}
