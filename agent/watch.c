/* inotify on the parent directories of watched files (see watch.h). */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "bulkhead/log.h"
#include "watch.h"

#define WATCH_MAX 8

struct watch {
	int fd;
	size_t n;
	struct {
		int wd;
		char *name; /* basename within the watched directory */
	} files[WATCH_MAX];
};

struct watch *watch_new(void)
{
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct watch *w = xcalloc(1, sizeof(*w));
	w->fd = fd;
	return w;
}

void watch_free(struct watch *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n; i++)
		free(w->files[i].name);
	close(w->fd);
	free(w);
}

int watch_fd(const struct watch *w)
{
	return w->fd;
}

int watch_add(struct watch *w, const char *path)
{
	if (w->n == WATCH_MAX)
		return -ENOSPC;
	char dir[PATH_MAX], base[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	snprintf(base, sizeof(base), "%s", path);
	int wd = inotify_add_watch(w->fd, dirname(dir),
				   IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM);
	if (wd < 0)
		return -errno;
	w->files[w->n].wd = wd;
	w->files[w->n].name = xstrdup(basename(base));
	return (int)w->n++;
}

void watch_dispatch(struct watch *w, unsigned *changed)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		ssize_t len = read(w->fd, buf, sizeof(buf));
		if (len <= 0) {
			if (len < 0 && errno != EAGAIN && errno != EINTR)
				log_warn("inotify: %m");
			return;
		}
		for (char *p = buf; p < buf + len;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				/* Lost events: assume everything changed. */
				*changed |= (1u << w->n) - 1;
				continue;
			}
			for (size_t i = 0; i < w->n; i++) {
				if (ev->wd == w->files[i].wd && ev->len && strcmp(ev->name, w->files[i].name) == 0)
					*changed |= 1u << i;
			}
		}
	}
}
