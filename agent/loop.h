/* The event loop: one thread, epoll over every fd (netlink, inotify,
 * signalfd, timerfd; later ZeroMQ). Handlers do bounded work and return. */
#pragma once

#include <stdint.h>

#include "bulkhead/common.h"

struct loop;
typedef void (*loop_fn)(void *data, uint32_t events);

struct loop *loop_new(void); /* NULL with errno */
void loop_free(struct loop *l);

/* Calls fn(data, epoll events) whenever fd is ready for events. The fd
 * stays the caller's. 0 or a negative errno. */
BH_MUST_CHECK int loop_add(struct loop *l, int fd, uint32_t events, loop_fn fn, void *data);
/* Safe from inside a handler, for any fd (its pending events are dropped). */
void loop_remove(struct loop *l, int fd);

/* A repeating timer every interval_ms; the loop owns its timerfd. Returns
 * that fd (for loop_remove) or a negative errno. */
BH_MUST_CHECK int loop_add_timer(struct loop *l, unsigned interval_ms, loop_fn fn, void *data);

/* Calls fn(data, 0) once, after the handlers of the current batch of
 * events have returned and before the loop waits again: for work that
 * must not run inside the caller's stack (a handler re-entered while it
 * walks a list). Asking again before it ran is one call. */
void loop_defer(struct loop *l, loop_fn fn, void *data);
/* Forgets every deferred call for data (before data is freed). */
void loop_cancel_deferred(struct loop *l, void *data);

/* Runs until loop_quit(); returns its code. */
int loop_run(struct loop *l);
void loop_quit(struct loop *l, int code);
