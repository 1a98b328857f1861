/* admin: the client side of the admin protocol (bulkhead/admin.h), for
 * `bulkhead` and the benchmarks (bench/apply-wait.c); the controller is
 * the server. */
#pragma once

#include <jansson.h>

#include "bulkhead/admin.h"
#include "bulkhead/common.h"

/* A REQ connection to the admin endpoint. Requests time out after
 * $BULKHEAD_ADMIN_TIMEOUT_MS (default 10000). */
struct admin_conn {
	const char *endpoint;
	void *ctx, *sock;
	int timeout_ms;
};

/* 0, or a negative errno after printing why on stderr: -EACCES when this
 * user may not use an ipc:// socket (said at once, not after a timeout). */
int admin_conn_open(struct admin_conn *c, const char *endpoint);
void admin_conn_close(struct admin_conn *c);
/* How long a call may wait to send and for its answer (default 10 s, or
 * $BULKHEAD_ADMIN_TIMEOUT_MS). 0 or a negative errno. */
BH_MUST_CHECK int admin_conn_set_timeout(struct admin_conn *c, int timeout_ms);
/* Sends req (stolen, "v" added) and returns the reply, checked to be an
 * object with a boolean "ok"; NULL after printing why on stderr. */
json_t *admin_conn_call(struct admin_conn *c, json_t *req);
