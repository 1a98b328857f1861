/* epoll event loop (see loop.h). Removed sources are marked dead and freed
 * after the current round of events, so a handler may remove any source;
 * deferred calls run after that round, before the loop waits again. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <zmq.h>

#include "bulkhead/log.h"
#include "bulkhead/loop.h"

enum source_kind {
	SOURCE_FD,
	SOURCE_TIMER, /* the loop owns fd, a timerfd */
	SOURCE_ZMQ,   /* fd is the socket's ZMQ_FD; zsock is asked ZMQ_EVENTS */
};

struct loop_source {
	enum source_kind kind;
	int fd;
	void *zsock;
	bool dead;
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
		if (s->kind == SOURCE_TIMER)
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

static struct loop_source *loop_add_source(struct loop *l, enum source_kind kind, int fd, void *zsock,
					   uint32_t events, loop_fn fn, void *data)
{
	struct loop_source *s = xcalloc(1, sizeof(*s));
	*s = (struct loop_source){
	    .kind = kind, .fd = fd, .zsock = zsock, .fn = fn, .data = data, .next = l->sources};
	struct epoll_event ev = {.events = events, .data.ptr = s};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = errno;
		free(s);
		errno = e;
		return NULL;
	}
	l->sources = s;
	return s;
}

struct loop_source *loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fn fn, void *data)
{
	return loop_add_source(l, SOURCE_FD, fd, NULL, events, fn, data);
}

void loop_remove(struct loop *l, struct loop_source *s)
{
	if (!s || s->dead)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, s->fd, NULL);
	s->dead = true;
}

struct loop_source *loop_add_timer(struct loop *l, unsigned interval_ms, loop_fn fn, void *data)
{
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct itimerspec its = {
	    .it_interval = {interval_ms / 1000, (long)(interval_ms % 1000) * 1000000},
	    .it_value = {interval_ms / 1000, (long)(interval_ms % 1000) * 1000000},
	};
	struct loop_source *s = NULL;
	if (timerfd_settime(fd, 0, &its, NULL) == 0)
		s = loop_add_source(l, SOURCE_TIMER, fd, NULL, EPOLLIN, fn, data);
	if (!s) {
		int e = errno;
		close(fd);
		errno = e;
	}
	return s;
}

struct loop_source *loop_add_zmq(struct loop *l, void *zsock, loop_fn fn, void *data)
{
	int fd;
	size_t len = sizeof(fd);
	if (zmq_getsockopt(zsock, ZMQ_FD, &fd, &len) < 0)
		return NULL;
	return loop_add_source(l, SOURCE_ZMQ, fd, zsock, EPOLLIN, fn, data);
}

static bool zmq_input_waits(const struct loop_source *s)
{
	int events = 0;
	size_t len = sizeof(events);
	return zmq_getsockopt(s->zsock, ZMQ_EVENTS, &events, &len) == 0 && (events & ZMQ_POLLIN);
}

/* Whether a ZeroMQ source has input: then the loop must not sleep, for
 * its fd may never signal it again. */
static bool loop_zmq_waiting(struct loop *l)
{
	for (struct loop_source *s = l->sources; s; s = s->next)
		if (s->kind == SOURCE_ZMQ && !s->dead && zmq_input_waits(s))
			return true;
	return false;
}

/* Calls every ZeroMQ source whose socket has input, once. */
static void loop_run_zmq(struct loop *l)
{
	for (struct loop_source *s = l->sources; s && !l->quit; s = s->next)
		if (s->kind == SOURCE_ZMQ && !s->dead && zmq_input_waits(s))
			s->fn(s->data, EPOLLIN);
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

/* One round: what was deferred, then every source that is ready (waiting
 * for one when wait and nothing is). 0 or a negative errno. */
static int loop_round(struct loop *l, bool wait)
{
	struct epoll_event evs[64];
	/* What the last round's handlers (or set-up) deferred. */
	loop_run_deferred(l);
	loop_reap(l);
	if (l->quit)
		return 0;
	/* Sends, here or in handlers, may have taken a ZeroMQ edge. */
	bool ready = l->deferred || loop_zmq_waiting(l);
	int n = epoll_wait(l->epfd, evs, (int)BH_ARRAY_SIZE(evs), wait && !ready ? -1 : 0);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n && !l->quit; i++) {
		struct loop_source *s = evs[i].data.ptr;
		if (s->dead || s->kind == SOURCE_ZMQ) /* ZeroMQ: asked below, every round */
			continue;
		if (s->kind == SOURCE_TIMER) {
			/* Consume its expirations first. */
			uint64_t ticks;
			if (read(s->fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
				log_warn("timer: %m");
		}
		s->fn(s->data, evs[i].events);
	}
	loop_run_zmq(l);
	loop_reap(l);
	return 0;
}

int loop_run(struct loop *l)
{
	l->quit = false;
	while (!l->quit) {
		int r = loop_round(l, true);
		if (r < 0)
			return r;
	}
	l->quit = false; /* it may run again (the unit tests run it in phases) */
	return l->code;
}

int loop_run_once(struct loop *l)
{
	return loop_round(l, false);
}

void loop_quit(struct loop *l, int code)
{
	l->quit = true;
	l->code = code;
}
