/* engine-http: HTTP GETs to a container engine's unix socket with libcurl,
 * driven by the agent's loop (the multi socket API: curl says which fds
 * and timeouts it waits for, the loop calls it back). No call blocks; a
 * stream (the events) is handed over as it comes.
 *
 * Callbacks run from the loop, never from inside libcurl's own calls
 * where it forbids calling it again: a callback may start and cancel
 * requests, the one it is called for included. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "bulkhead/common.h"
#include "bulkhead/loop.h"

struct engine_http;
struct engine_http_req;

struct engine_http_cb {
	/* Each header line of the response, status line included, as it
	 * comes (CRLF included). May be NULL. */
	void (*header)(void *arg, const char *line, size_t len);
	/* The body as it comes (a stream); NULL: the body is collected, at
	 * most the request's max bytes (more fails the request), and given
	 * to done. */
	void (*data)(void *arg, const char *data, size_t len);
	/* Once, at the end (not after engine_http_cancel()): status is the
	 * HTTP status, 0 when no answer came whole (error says why: the
	 * socket is not there, the engine went away mid-stream, a timeout,
	 * a body over max). body is NUL-terminated, borrowed for the call. */
	void (*done)(void *arg, long status, const char *body, size_t len, const char *error);
};

/* Must be called once before any thread starts (libcurl's global state).
 * Loads libcurl (dlopen: agents without an engine do not carry it);
 * failure is logged and said by engine_http_unavailable(). */
void engine_http_global_init(void);
/* NULL when requests can be made, else why not (static text). */
const char *engine_http_unavailable(void);
/* s percent-encoded for a URL's query, malloc'd (free()); NULL on
 * failure or before libcurl is loaded. */
char *engine_http_escape(const char *s);

/* Requests to socket (copied) from loop (borrowed). */
struct engine_http *engine_http_new(struct loop *loop, const char *socket);
/* Cancels every request (no callback) and frees. Accepts NULL. */
void engine_http_free(struct engine_http *h);

/* GET path (e.g. "/v1.41/containers/json", already URL-encoded). max: the
 * largest body collected; timeout_ms: the whole request (0: none, for a
 * stream). cb is borrowed for the request's life, arg is the callbacks'.
 * The handle stays valid until done is called or it is cancelled. NULL
 * only when libcurl cannot make a handle (logged). */
struct engine_http_req *engine_http_get(struct engine_http *h, const char *path, size_t max,
					unsigned timeout_ms, const struct engine_http_cb *cb, void *arg);
/* Stops r without calling done. */
void engine_http_cancel(struct engine_http *h, struct engine_http_req *r);
/* Requests started and not yet done. */
unsigned engine_http_pending(const struct engine_http *h);

/* Runs h's transfers without the loop (for --once, before the loop
 * runs), until stop(arg) says so or timeout_ms passes. 0, or -ETIMEDOUT. */
int engine_http_run(struct engine_http *h, unsigned timeout_ms, bool (*stop)(void *arg), void *arg);
