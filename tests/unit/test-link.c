/* The agent's event loop and its controller link (agent/loop.h, link.h):
 * deferred calls run once, after the handlers, in order; link_send never
 * runs the message handler inside the caller's stack (a FLOWS_ACK handled
 * there once freed the flow batch the caller was sending), and the
 * messages waiting during a send are all delivered afterwards. A ROUTER on
 * an ipc socket in a temporary directory stands for the controller. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "link.h"
#include "bulkhead/loop.h"
#include "test.h"

/* ---- loop_defer ---- */

static char order[16];
static size_t n_order;

static void note(void *data, uint32_t events)
{
	if (n_order < sizeof(order) - 1)
		order[n_order++] = *(const char *)data;
}

static void note_and_defer_again(void *data, uint32_t events);

struct chain {
	struct loop *loop;
	int left;
};

static void note_and_defer_again(void *data, uint32_t events)
{
	struct chain *c = data;
	note("c", 0);
	if (--c->left > 0)
		loop_defer(c->loop, note_and_defer_again, c);
	else
		loop_quit(c->loop, 7);
}

static struct loop *cancel_loop;
static const char cancelled = 'z';

static void cancel_the_next(void *data, uint32_t events)
{
	note(data, 0);
	loop_cancel_deferred(cancel_loop, (void *)&cancelled); /* queued in this same round */
}

TEST(a_call_may_cancel_a_later_one_of_its_round)
{
	struct loop *l = cancel_loop = loop_new();
	n_order = 0;
	static const char y = 'y';
	loop_defer(l, cancel_the_next, (void *)&y);
	loop_defer(l, note, (void *)&cancelled);
	struct chain c = {l, 1};
	loop_defer(l, note_and_defer_again, &c);
	CHECK(loop_run(l) == 7);
	order[n_order] = '\0';
	CHECK_STR(order, "yc");
	loop_free(l);
}

TEST(loop_defer_runs_once_in_order_then_chains)
{
	struct loop *l = loop_new();
	CHECK(l != NULL);
	if (!l)
		return;
	n_order = 0;
	static const char a = 'a', b = 'b', x = 'x';
	loop_defer(l, note, (void *)&a);
	loop_defer(l, note, (void *)&b);
	loop_defer(l, note, (void *)&a); /* asked again before it ran: once */
	loop_defer(l, note, (void *)&x);
	loop_cancel_deferred(l, (void *)&x);
	struct chain c = {l, 3};
	loop_defer(l, note_and_defer_again, &c);
	CHECK(loop_run(l) == 7);
	order[n_order] = '\0';
	CHECK_STR(order, "abccc");
	loop_free(l);
}

/* ---- ZeroMQ sources ---- */

enum { N = 5 };

static void give_up(void *data, uint32_t events)
{
	loop_quit(data, 1);
}

struct zpeer {
	struct loop *loop;
	void *pull, *push;
	int got, sent_back;
};

/* Reads one message per call (a bounded handler) and sends one on the
 * socket the loop watches: input that arrives meanwhile must not be left
 * waiting for an edge that a send consumed. */
static void on_zmq(void *data, uint32_t events)
{
	struct zpeer *z = data;
	char buf[16];
	if (zmq_recv(z->pull, buf, sizeof(buf), ZMQ_DONTWAIT) < 0)
		return;
	z->got++;
	zmq_send(z->pull, "x", 1, ZMQ_DONTWAIT);
	if (z->got == N)
		loop_quit(z->loop, 0);
}

TEST(a_zmq_source_gets_every_message_one_per_call)
{
	void *ctx = zmq_ctx_new();
	struct zpeer z = {
	    .loop = loop_new(), .pull = zmq_socket(ctx, ZMQ_PAIR), .push = zmq_socket(ctx, ZMQ_PAIR)};
	CHECK(zmq_bind(z.pull, "inproc://loop-test") == 0);
	CHECK(zmq_connect(z.push, "inproc://loop-test") == 0);
	for (int i = 0; i < N; i++)
		CHECK(zmq_send(z.push, "m", 1, 0) == 1);
	struct loop_source *src = loop_add_zmq(z.loop, z.pull, on_zmq, &z);
	CHECK(src != NULL);
	CHECK(loop_add_timer(z.loop, 5000, give_up, z.loop) != NULL);
	CHECK(loop_run(z.loop) == 0);
	CHECK(z.got == N);
	loop_remove(z.loop, src);
	loop_free(z.loop);
	int zero = 0;
	zmq_setsockopt(z.pull, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(z.push, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_close(z.pull);
	zmq_close(z.push);
	zmq_ctx_term(ctx);
}

/* ---- the link ---- */

struct peer {
	struct loop *loop;
	struct link *link;
	bool in_send;
	int delivered, delivered_in_send;
};

static void on_message(void *data, const struct proto_msg *m)
{
	struct peer *p = data;
	p->delivered++;
	p->delivered_in_send += p->in_send;
	/* What the agent does: answer from inside the handler. */
	p->in_send = true;
	link_send(p->link, PROTO_HEARTBEAT, json_object());
	p->in_send = false;
	if (p->delivered == N)
		loop_quit(p->loop, 0);
}

static void on_hello(void *data)
{
}

static json_t *heartbeat(void *data)
{
	return json_object();
}

/* Receives one whole message on the ROUTER; its identity into rid. */
static bool router_recv(void *router, char *rid, size_t *rid_len)
{
	zmq_pollitem_t it = {.socket = router, .events = ZMQ_POLLIN};
	if (zmq_poll(&it, 1, 2000) <= 0)
		return false;
	int n = zmq_recv(router, rid, 255, 0);
	if (n < 0)
		return false;
	*rid_len = (size_t)n;
	int more = 1;
	size_t sz = sizeof(more);
	char junk[4096];
	while (zmq_getsockopt(router, ZMQ_RCVMORE, &more, &sz) == 0 && more)
		if (zmq_recv(router, junk, sizeof(junk), 0) < 0)
			return false;
	return true;
}

TEST(link_send_never_runs_the_handler_inside_the_caller)
{
	char dir[] = "/tmp/bulkhead-test-link.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char endpoint[128];
	snprintf(endpoint, sizeof(endpoint), "ipc://%s/controller", dir);
	void *ctx = zmq_ctx_new(), *router = zmq_socket(ctx, ZMQ_ROUTER);
	int zero = 0;
	zmq_setsockopt(router, ZMQ_LINGER, &zero, sizeof(zero));
	CHECK(zmq_bind(router, endpoint) == 0);

	struct peer p = {.loop = loop_new()};
	struct link_options o = {.endpoint = endpoint, .insecure = true, .heartbeat_ms = 60000};
	struct link_callbacks cb = {.message = on_message, .hello = on_hello, .heartbeat = heartbeat};
	p.link = link_new(p.loop, &o, &cb, &p);
	CHECK(p.link != NULL);
	if (!p.link)
		goto out;
	link_send(p.link, PROTO_HEARTBEAT, json_object());
	char rid[256];
	size_t rid_len = 0;
	CHECK(router_recv(router, rid, &rid_len));

	/* Five messages wait at the DEALER before the agent's next send. */
	for (int i = 0; i < N; i++) {
		size_t len;
		char *text = proto_encode(json_object(), &len);
		const char *type = proto_type_name(PROTO_HEARTBEAT);
		zmq_send(router, rid, rid_len, ZMQ_SNDMORE);
		zmq_send(router, type, strlen(type), ZMQ_SNDMORE);
		zmq_send(router, text, len, 0);
		free(text);
	}
	for (int i = 0; i < 500 && !link_input_waiting(p.link); i++)
		usleep(10 * 1000);
	CHECK(link_input_waiting(p.link));
	p.in_send = true;
	link_send(p.link, PROTO_HEARTBEAT, json_object());
	p.in_send = false;
	CHECK(p.delivered_in_send == 0);

	/* The loop delivers all of them, none of them nested in a send. */
	CHECK(loop_add_timer(p.loop, 5000, give_up, p.loop) != NULL);
	CHECK(loop_run(p.loop) == 0); /* quits on the Nth message */
	CHECK(p.delivered == N);
	CHECK(p.delivered_in_send == 0);
	link_free(p.link);
out:
	loop_free(p.loop);
	zmq_close(router);
	zmq_ctx_term(ctx);
	char sock[160];
	snprintf(sock, sizeof(sock), "%s/controller", dir);
	unlink(sock);
	rmdir(dir);
}

int main(void)
{
	return test_main();
}
