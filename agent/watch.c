/* inotify on the parent directory of a watched file (see watch.h). */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "bulkhead/log.h"
#include "watch.h"

struct watch {
	int fd, wd;
	char *name; /* basename within the watched directory */
	struct loop *loop;
	struct loop_source *src;
	void (*changed)(void *data);
	void *data;
};

/* Reads pending events; calls back once if any was about the file. */
static void on_inotify(void *data, uint32_t events)
{
	struct watch *w = data;
	bool changed = false;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		ssize_t len = read(w->fd, buf, sizeof(buf));
		if (len <= 0) {
			if (len < 0 && errno != EAGAIN && errno != EINTR)
				log_warn("inotify: %m");
			break;
		}
		for (char *p = buf; p < buf + len;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			p += sizeof(*ev) + ev->len;
			/* Lost events: assume the file changed. */
			if ((ev->mask & IN_Q_OVERFLOW) ||
			    (ev->wd == w->wd && ev->len && strcmp(ev->name, w->name) == 0))
				changed = true;
		}
	}
	if (changed)
		w->changed(w->data);
}

int watch_new(struct loop *loop, const char *path, void (*changed)(void *data), void *data,
	      struct watch **out)
{
	*out = NULL;
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0) {
		int r = -errno;
		log_error("watching files: %m; changes to them need a restart");
		return r;
	}
	struct watch *w = xcalloc(1, sizeof(*w));
	w->fd = fd;
	w->loop = loop;
	w->changed = changed;
	w->data = data;
	char dir[PATH_MAX], base[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	snprintf(base, sizeof(base), "%s", path);
	w->name = xstrdup(basename(base));
	w->wd = inotify_add_watch(fd, dirname(dir),
				  IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM);
	if (w->wd < 0) {
		int r = log_error_errno(-errno, "watching %s: %m", path);
		watch_free(w);
		return r;
	}
	if (!(w->src = loop_add_fd(loop, fd, EPOLLIN, on_inotify, w))) {
		int r = -errno;
		log_error("watching files: %m; changes to them need a restart");
		watch_free(w);
		return r;
	}
	*out = w;
	return 0;
}

void watch_free(struct watch *w)
{
	if (!w)
		return;
	if (w->src)
		loop_remove(w->loop, w->src);
	free(w->name);
	close(w->fd);
	free(w);
}
