/* The one capped file reader (see fileio.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bulkhead/fileio.h"

/* Reads fd to its end, at most max bytes (max < SIZE_MAX / 2); size is
 * what fstat said, a hint only: the file may change while it is read, and
 * one byte past max is enough to know it is too large. */
static int read_all(int fd, size_t size, size_t max, char **text, size_t *len)
{
	size_t cap = (size < max ? size : max) + 1, n = 0;
	char *buf = malloc(cap + 1);
	int r = -ENOMEM;
	if (!buf)
		return r;
	for (;;) {
		if (n == cap) { /* it grew since fstat */
			cap = cap > max / 2 ? max + 1 : 2 * cap;
			char *grown = realloc(buf, cap + 1);
			if (!grown)
				goto err_free_buf;
			buf = grown;
		}
		ssize_t got = read(fd, buf + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			r = -errno;
			goto err_free_buf;
		}
		if (got == 0)
			break;
		n += (size_t)got;
		if (n > max) {
			r = -EFBIG;
			goto err_free_buf;
		}
	}
	buf[n] = '\0';
	*text = buf;
	*len = n;
	return 0;

err_free_buf:
	free(buf);
	return r;
}

int fileio_read(const char *path, size_t max, char **text, size_t *len)
{
	/* O_NONBLOCK: opening a FIFO would wait for a writer; O_NOCTTY: a
	 * terminal named here must not become the daemon's. */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int r;
	if (fstat(fd, &st) < 0)
		r = -errno;
	else if (S_ISDIR(st.st_mode))
		r = -EISDIR;
	else if (!S_ISREG(st.st_mode))
		r = -EINVAL;
	else if (st.st_size < 0 || (uintmax_t)st.st_size > max)
		r = -EFBIG;
	else
		r = read_all(fd, (size_t)st.st_size, max, text, len);
	close(fd);
	return r;
}

const char *fileio_strerror(int r)
{
	switch (r) {
	case -EINVAL:
		return "not a regular file (a FIFO, a device or a socket)";
	case -EFBIG:
		return "larger than allowed";
	default:
		return strerror(-r);
	}
}
