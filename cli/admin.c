/* The client side of the admin protocol (see admin.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <zmq.h>

#include "admin.h"

/* The socket file of an ipc:// endpoint (not an abstract one), or NULL. */
static const char *ipc_path(const char *endpoint)
{
	return strncmp(endpoint, "ipc://", 6) == 0 && endpoint[6] && endpoint[6] != '@' ? endpoint + 6 : NULL;
}

int admin_conn_open(struct admin_conn *c, const char *endpoint)
{
	c->endpoint = endpoint;
	/* ZeroMQ connects in the background and would only time out: a
	 * socket this user may not open is said at once. A missing one may
	 * still come (the controller starting): that is left to the wait. */
	const char *path = ipc_path(endpoint);
	if (path && faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) < 0 && (errno == EACCES || errno == EPERM)) {
		fprintf(stderr,
			"bulkhead: admin endpoint %s: permission denied (only root and the controller's "
			"user may connect)\n",
			endpoint);
		return -EACCES;
	}
	c->timeout_ms = 10000;
	const char *t = getenv("BULKHEAD_ADMIN_TIMEOUT_MS");
	if (t && atoi(t) > 0)
		c->timeout_ms = atoi(t);
	c->ctx = zmq_ctx_new();
	c->sock = c->ctx ? zmq_socket(c->ctx, ZMQ_REQ) : NULL;
	int zero = 0;
	int64_t max = ADMIN_MAX_MSG;
	if (!c->sock || zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
	    zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &max, sizeof(max)) < 0 ||
	    admin_conn_set_timeout(c, c->timeout_ms) < 0 || zmq_connect(c->sock, endpoint) < 0) {
		int e = errno;
		fprintf(stderr, "bulkhead: admin endpoint %s: %s\n", endpoint, zmq_strerror(e));
		return e > 0 ? -e : -EINVAL;
	}
	return 0;
}

int admin_conn_set_timeout(struct admin_conn *c, int timeout_ms)
{
	if (zmq_setsockopt(c->sock, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms)) < 0 ||
	    zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &timeout_ms, sizeof(timeout_ms)) < 0)
		return -errno;
	c->timeout_ms = timeout_ms;
	return 0;
}

void admin_conn_close(struct admin_conn *c)
{
	if (c->sock)
		zmq_close(c->sock);
	if (c->ctx)
		zmq_ctx_term(c->ctx);
}

/* Sends req (stolen) and returns the reply, checked to be an object with
 * "ok"; NULL after printing why. */
json_t *admin_conn_call(struct admin_conn *c, json_t *req)
{
	json_object_set_new(req, "v", json_integer(ADMIN_VERSION));
	char *text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!text)
		abort();
	int r = zmq_send(c->sock, text, strlen(text), 0);
	free(text);
	zmq_msg_t m;
	zmq_msg_init(&m);
	if (r < 0 || zmq_msg_recv(&m, c->sock, 0) < 0) {
		int e = errno;
		zmq_msg_close(&m);
		const char *path = ipc_path(c->endpoint);
		if (e == EAGAIN && path && access(path, F_OK) < 0 && errno == ENOENT)
			fprintf(stderr,
				"bulkhead: no answer from the controller at %s: no socket there (is "
				"bulkhead-controller running?)\n",
				c->endpoint);
		else
			fprintf(stderr, "bulkhead: no answer from the controller at %s%s%s\n", c->endpoint,
				e == EAGAIN ? "" : ": ", e == EAGAIN ? "" : zmq_strerror(e));
		return NULL;
	}
	json_error_t jerr;
	json_t *reply = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, &jerr);
	zmq_msg_close(&m);
	if (!json_is_object(reply) || !json_is_boolean(json_object_get(reply, "ok"))) {
		fprintf(stderr, "bulkhead: the controller's reply is not understood%s%s\n", reply ? "" : ": ",
			reply ? "" : jerr.text);
		json_decref(reply);
		return NULL;
	}
	return reply;
}
