/* The event loop both daemons run: one thread, epoll over every source
 * (netlink, inotify, signalfd, timerfd, ZeroMQ sockets). Handlers do
 * bounded work and return. A source is a handle the loop hands out; the
 * caller keeps it to remove the source again. */
#pragma once

#include <stdint.h>

#include "bulkhead/common.h"

struct loop;
struct loop_source;
typedef void (*loop_fn)(void *data, uint32_t events);

struct loop *loop_new(void); /* NULL with errno */
/* Frees every source still registered (closing the fds the loop owns:
 * timers) and every deferred call. */
void loop_free(struct loop *l);

/* Calls fn(data, epoll events) whenever fd is ready for events. The fd
 * stays the caller's (close it after loop_remove). The source, or NULL
 * with errno. */
struct loop_source *loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fn fn, void *data);

/* A repeating timer every interval_ms (the loop owns its timerfd): fn runs
 * once per expiry, however many passed. The source, or NULL with errno. */
struct loop_source *loop_add_timer(struct loop *l, unsigned interval_ms, loop_fn fn, void *data);

/* A ZeroMQ socket (still the caller's): fn(data, EPOLLIN) runs whenever
 * ZMQ_EVENTS says a message waits. ZeroMQ's ZMQ_FD only signals edges, and
 * a send may consume the edge of input that arrived meanwhile, so the loop
 * asks ZMQ_EVENTS itself after every round of handlers: fn may read a
 * bounded number of messages and return; it is called again in the next
 * round while input waits, without the loop sleeping in between. The
 * source, or NULL with errno. */
struct loop_source *loop_add_zmq(struct loop *l, void *zsock, loop_fn fn, void *data);

/* Stops the source's calls at once, also from inside a handler (pending
 * events are dropped); its memory goes after the current round. Accepts
 * NULL. */
void loop_remove(struct loop *l, struct loop_source *s);

/* Calls fn(data, 0) once, after the handlers of the current round have
 * returned and before the loop waits again: for work that must not run
 * inside the caller's stack (a handler re-entered while it walks a list).
 * Asking again before it ran is one call. */
void loop_defer(struct loop *l, loop_fn fn, void *data);
/* Forgets every deferred call for data (before data is freed). */
void loop_cancel_deferred(struct loop *l, void *data);

/* Runs until loop_quit(); returns its code, or a negative errno when
 * waiting failed. It may be run again afterwards. */
int loop_run(struct loop *l);
void loop_quit(struct loop *l, int code);
