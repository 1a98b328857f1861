/* Files in the agent's state directory (see state.h). */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bulkhead/fileio.h"
#include "bulkhead/log.h"
#include "state.h"

static int write_atomic(const char *dir, const char *name, const char *text, size_t len, bool sync)
{
	char path[4096], tmp[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int r = -errno;
			close(fd);
			unlink(tmp);
			return r;
		}
		off += (size_t)n;
	}
	/* What must survive a crash (the cache) is on disk before the rename. */
	if ((sync && fsync(fd) < 0) || close(fd) < 0) {
		int r = -errno;
		unlink(tmp);
		return r;
	}
	if (rename(tmp, path) < 0) {
		int r = -errno;
		unlink(tmp);
		return r;
	}
	return 0;
}

int state_write(const char *dir, const char *name, const char *text, size_t len)
{
	return write_atomic(dir, name, text, len, true);
}

int state_write_nosync(const char *dir, const char *name, const char *text, size_t len)
{
	return write_atomic(dir, name, text, len, false);
}

int state_read_path(const char *path, size_t max, char **text, size_t *len)
{
	return fileio_read(path, max, text, len);
}

int state_read(const char *dir, const char *name, size_t max, char **text, size_t *len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return state_read_path(path, max, text, len);
}
