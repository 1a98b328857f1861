/* The agent's link to the controller (see link.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include <zmq.h>

#include "bulkhead/escape.h"
#include "bulkhead/log.h"
#include "bulkhead/zmsg.h"
#include "link.h"

struct link {
	struct link_options o;
	struct link_callbacks cb;
	void *data;
	struct loop *loop;
	void *ctx, *sock; /* ctx: NULL when the options gave one */
	struct loop_source *sock_src, *timer_src;
	int64_t last_heard_ms; /* 0: never */
	bool silent_logged;
	uint64_t received, rejected, send_dropped;
	char last_reject[256];
};

static bool link_alive(const struct link *l)
{
	return l->last_heard_ms &&
	       clock_mono_ms() - l->last_heard_ms <= (int64_t)l->o.heartbeat_ms * PROTO_DEAD_HEARTBEATS;
}

/* Reads one whole message; false when none is waiting. */
static bool recv_one(struct link *l)
{
	struct zmsg m;
	if (zmsg_recv(&m, l->sock, 2) <= 0)
		return false;
	struct proto_msg msg;
	char err[256];
	if (m.parts != 2) {
		snprintf(err, sizeof(err), "a message of %d frames (want 2: type, body)", m.parts);
	} else if (proto_decode(zmsg_data(&m, 0), zmsg_size(&m, 0), zmsg_data(&m, 1), zmsg_size(&m, 1), &msg,
				err, sizeof(err)) == 0) {
		l->received++;
		l->last_heard_ms = clock_mono_ms();
		if (l->silent_logged)
			log_info("controller %s answers again", l->o.endpoint);
		l->silent_logged = false;
		l->cb.message(l->data, &msg);
		proto_msg_release(&msg);
		err[0] = '\0';
	}
	if (err[0]) {
		l->rejected++;
		/* Once per kind of problem, not once per message. */
		if (strcmp(err, l->last_reject) != 0)
			log_warn("dropped a malformed message from the controller: %s", ESCAPED(err));
		snprintf(l->last_reject, sizeof(l->last_reject), "%s", err);
	}
	zmsg_release(&m);
	return true;
}

/* Messages read per call: the loop calls again while more wait. */
#define LINK_BURST 64

static void on_input(void *data, uint32_t events)
{
	struct link *l = data;
	for (int i = 0; i < LINK_BURST && recv_one(l); i++)
		;
}

static void on_timer(void *data, uint32_t events)
{
	struct link *l = data;
	if (!link_alive(l)) {
		if (l->last_heard_ms && !l->silent_logged)
			log_warn("controller %s silent for %d heartbeats; saying HELLO until it answers",
				 l->o.endpoint, PROTO_DEAD_HEARTBEATS);
		l->silent_logged = l->last_heard_ms != 0;
		l->cb.hello(l->data);
	} else {
		link_send(l, PROTO_HEARTBEAT, l->cb.heartbeat(l->data));
	}
}

void link_send(struct link *l, enum proto_type t, json_t *body)
{
	size_t len;
	char *text = proto_encode(body, &len);
	if (!text)
		abort();
	const char *type = proto_type_name(t);
	if (zmq_send(l->sock, type, strlen(type), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
	    zmq_send(l->sock, text, len, ZMQ_DONTWAIT) < 0) {
		l->send_dropped++;
		log_debug("controller: %s not sent: %s", type, zmq_strerror(errno));
	}
	free(text);
	/* Input is never read here: link_send is called from inside message
	 * handlers and from loops over the caller's lists, which a handler run
	 * now could change under them (a FLOWS_ACK freeing the batch being
	 * sent). The loop asks the socket after this round (loop_add_zmq). */
}

bool link_input_waiting(struct link *l)
{
	int events = 0;
	size_t sz = sizeof(events);
	return zmq_getsockopt(l->sock, ZMQ_EVENTS, &events, &sz) == 0 && (events & ZMQ_POLLIN);
}

json_t *link_status(struct link *l)
{
	return json_pack("{s:s,s:b,s:b,s:I,s:I,s:I}", "endpoint", l->o.endpoint, "connected", link_alive(l),
			 "curve", !l->o.insecure, "messages_received", (json_int_t)l->received,
			 "messages_rejected", (json_int_t)l->rejected, "sends_dropped",
			 (json_int_t)l->send_dropped);
}

struct link *link_new(struct loop *loop, const struct link_options *o, const struct link_callbacks *cb,
		      void *data)
{
	struct link *l = xcalloc(1, sizeof(*l));
	l->o = *o;
	l->cb = *cb;
	l->data = data;
	l->loop = loop;
	l->ctx = o->zctx ? NULL : zmq_ctx_new();
	l->sock = o->zctx || l->ctx ? zmq_socket(o->zctx ? o->zctx : l->ctx, ZMQ_DEALER) : NULL;
	int zero = 0, hwm = 8;
	int64_t max = PROTO_MAX_MSG;
	if (!l->sock || zmq_setsockopt(l->sock, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
	    zmq_setsockopt(l->sock, ZMQ_MAXMSGSIZE, &max, sizeof(max)) < 0 ||
	    /* The first HELLO waits for the connection; a long outage queues
	     * only a few messages (the rest are dropped and counted). */
	    zmq_setsockopt(l->sock, ZMQ_SNDHWM, &hwm, sizeof(hwm)) < 0)
		goto err;
	if (!o->insecure && (zmq_setsockopt(l->sock, ZMQ_CURVE_SERVERKEY, o->server_key, KEY_Z85_LEN) < 0 ||
			     zmq_setsockopt(l->sock, ZMQ_CURVE_PUBLICKEY, o->public_key, KEY_Z85_LEN) < 0 ||
			     zmq_setsockopt(l->sock, ZMQ_CURVE_SECRETKEY, o->secret_key, KEY_Z85_LEN) < 0))
		goto err;
	if (zmq_connect(l->sock, o->endpoint) < 0 ||
	    !(l->sock_src = loop_add_zmq(loop, l->sock, on_input, l)) ||
	    !(l->timer_src = loop_add_timer(loop, o->heartbeat_ms, on_timer, l)))
		goto err;
	return l;
err:
	log_error("controller %s: %s", o->endpoint, zmq_strerror(errno));
	link_free(l);
	return NULL;
}

void link_free(struct link *l)
{
	if (!l)
		return;
	loop_remove(l->loop, l->sock_src);
	loop_remove(l->loop, l->timer_src);
	if (l->sock)
		zmq_close(l->sock);
	if (l->ctx)
		zmq_ctx_term(l->ctx);
	free(l);
}
