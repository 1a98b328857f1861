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

/* A repeating timer every interval_ms; the loop owns its timerfd. */
BH_MUST_CHECK int loop_add_timer(struct loop *l, unsigned interval_ms, loop_fn fn, void *data);

/* Runs until loop_quit(); returns its code. */
int loop_run(struct loop *l);
void loop_quit(struct loop *l, int code);
