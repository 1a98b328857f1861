/* epoll event loop (see loop.h). Removed sources are marked dead and freed
 * after the current batch of events, so a handler may remove any source;
 * deferred calls run after that batch, before the loop waits again. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "bulkhead/log.h"
#include "loop.h"

struct loop_source {
	int fd;
	bool owns_fd, dead;
	loop_fn fn;
	void *data;
	struct loop_source *next;
};

struct loop_deferred {
	loop_fn fn;
	void *data;
	struct loop_deferred *next;
};

struct loop {
	int epfd;
	bool quit;
	int code;
	struct loop_source *sources;
	struct loop_deferred *deferred, **deferred_tail; /* in the order asked */
	struct loop_deferred *running;			 /* the round being run */
};

struct loop *loop_new(void)
{
	struct loop *l = xcalloc(1, sizeof(*l));
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		free(l);
		return NULL;
	}
	l->deferred_tail = &l->deferred;
	return l;
}

static void loop_reap(struct loop *l)
{
	for (struct loop_source **p = &l->sources; *p;) {
		struct loop_source *s = *p;
		if (!s->dead) {
			p = &s->next;
			continue;
		}
		*p = s->next;
		if (s->owns_fd)
			close(s->fd);
		free(s);
	}
}

/* Frees the calls for data in the list at p; every call when data is NULL. */
static void cancel_in(struct loop_deferred **p, void *data)
{
	while (*p) {
		struct loop_deferred *d = *p;
		if (data && d->data != data) {
			p = &d->next;
			continue;
		}
		*p = d->next;
		free(d);
	}
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	for (struct loop_source *s = l->sources; s; s = s->next)
		s->dead = true;
	loop_reap(l);
	cancel_in(&l->running, NULL);
	cancel_in(&l->deferred, NULL);
	close(l->epfd);
	free(l);
}

static int loop_add_source(struct loop *l, int fd, uint32_t events, loop_fn fn, void *data, bool owns_fd)
{
	struct loop_source *s = xcalloc(1, sizeof(*s));
	*s = (struct loop_source){.fd = fd, .owns_fd = owns_fd, .fn = fn, .data = data, .next = l->sources};
	struct epoll_event ev = {.events = events, .data.ptr = s};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int r = -errno;
		free(s);
		return r;
	}
	l->sources = s;
	return 0;
}

int loop_add(struct loop *l, int fd, uint32_t events, loop_fn fn, void *data)
{
	return loop_add_source(l, fd, events, fn, data, false);
}

void loop_remove(struct loop *l, int fd)
{
	for (struct loop_source *s = l->sources; s; s = s->next) {
		if (s->fd == fd && !s->dead) {
			epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
			s->dead = true;
		}
	}
}

int loop_add_timer(struct loop *l, unsigned interval_ms, loop_fn fn, void *data)
{
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct itimerspec its = {
		.it_interval = {interval_ms / 1000, (long)(interval_ms % 1000) * 1000000},
		.it_value = {interval_ms / 1000, (long)(interval_ms % 1000) * 1000000},
	};
	if (timerfd_settime(fd, 0, &its, NULL) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	int r = loop_add_source(l, fd, EPOLLIN, fn, data, true);
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

void loop_defer(struct loop *l, loop_fn fn, void *data)
{
	for (struct loop_deferred *d = l->deferred; d; d = d->next)
		if (d->fn == fn && d->data == data)
			return;
	struct loop_deferred *d = xcalloc(1, sizeof(*d));
	*d = (struct loop_deferred){.fn = fn, .data = data};
	*l->deferred_tail = d;
	l->deferred_tail = &d->next;
}

void loop_cancel_deferred(struct loop *l, void *data)
{
	cancel_in(&l->running, data); /* a call of this round may free another's data */
	cancel_in(&l->deferred, data);
	l->deferred_tail = &l->deferred;
	while (*l->deferred_tail)
		l->deferred_tail = &(*l->deferred_tail)->next;
}

/* Runs what was deferred so far; what those calls defer in turn waits for
 * the next round, after a look at the other sources (no starving them). */
static void loop_run_deferred(struct loop *l)
{
	l->running = l->deferred;
	l->deferred = NULL;
	l->deferred_tail = &l->deferred;
	while (l->running) {
		struct loop_deferred *d = l->running;
		l->running = d->next;
		loop_fn fn = d->fn;
		void *data = d->data;
		free(d);
		if (!l->quit)
			fn(data, 0);
	}
}

int loop_run(struct loop *l)
{
	struct epoll_event evs[64];
	while (!l->quit) {
		/* What the last batch's handlers (or set-up) deferred. */
		loop_run_deferred(l);
		loop_reap(l);
		if (l->quit)
			break;
		int n = epoll_wait(l->epfd, evs, (int)BH_ARRAY_SIZE(evs), l->deferred ? 0 : -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n && !l->quit; i++) {
			struct loop_source *s = evs[i].data.ptr;
			if (s->dead)
				continue;
			if (s->owns_fd) {
				/* A timer: consume its expirations first. */
				uint64_t ticks;
				if (read(s->fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
					log_warn("timer: %m");
			}
			s->fn(s->data, evs[i].events);
		}
		loop_reap(l);
	}
	return l->code;
}

void loop_quit(struct loop *l, int code)
{
	l->quit = true;
	l->code = code;
}
