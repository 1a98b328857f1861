/* The controller's admin endpoint (controller/admin.c) answers every
 * request, whatever its strings: bytes that are not UTF-8 in a request, a
 * --policy path or a comment an older controller stored that is not UTF-8,
 * and an error message cut inside a character each get a reply, never an
 * abort; on a loop with a worker, the slow requests are answered from the
 * worker. The endpoint is bound on inproc with a temporary store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <zmq.h>

#include "bulkhead/loop.h"
#include "bulkhead/worker.h"
#include "admin.h"
#include "compiler.h"
#include "store.h"
#include "test.h"

#define POLICY                                                                                               \
	"{\"version\": 1, \"groups\": {\"web\": {\"labels\": {\"app\": \"web\"}}}, "                         \
	"\"policies\": [{\"name\": \"web-in\", \"applies_to\": \"web\", \"ingress\": []}]}"

static char dir[64];
static void *zctx, *req;
static struct store *store;
static struct nodes *nodes;
static struct compiler *compiler;
static struct admin *admin;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/bulkhead-test-admin.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	char *err = NULL;
	store = store_open(dir, &err);
	nodes = nodes_new();
	compiler = compiler_new(nodes);
	zctx = zmq_ctx_new();
	/* Only the policy and revision commands: no agents needed; no loop
	 * nor worker: every request is answered at once. */
	struct admin_options o = {.endpoint = "inproc://test-admin"};
	admin = store ? admin_new(NULL, zctx, &o, store, compiler, NULL, &err) : NULL;
	if (!admin) {
		fprintf(stderr, "setup: %s\n", err ? err : "?");
		exit(1);
	}
	req = zmq_socket(zctx, ZMQ_REQ);
	if (zmq_connect(req, "inproc://test-admin") < 0)
		abort();
}

static void teardown(void)
{
	zmq_close(req);
	admin_free(admin);
	zmq_ctx_term(zctx);
	compiler_free(compiler);
	nodes_free(nodes);
	store_free(store);
	test_remove_dir(dir);
}

/* Sends raw bytes as a request; the parsed reply (NULL: none, or not JSON). */
static json_t *ask_raw(const char *text)
{
	if (zmq_send(req, text, strlen(text), 0) < 0)
		return NULL;
	/* The endpoint reads what waits; its reply may take a few turns. */
	char buf[65536];
	int n = -1;
	for (int i = 0; i < 200 && n < 0; i++) {
		admin_dispatch(admin);
		n = zmq_recv(req, buf, sizeof(buf) - 1, ZMQ_DONTWAIT);
		if (n < 0)
			usleep(10000);
	}
	if (n < 0 || n >= (int)sizeof(buf))
		return NULL;
	return json_loadb(buf, (size_t)n, 0, NULL);
}

static bool is_refusal(json_t *reply, int code)
{
	return json_is_false(json_object_get(reply, "ok")) &&
	       json_integer_value(json_object_get(reply, "code")) == code &&
	       json_is_string(json_object_get(reply, "error"));
}

TEST(request_bytes_not_utf8_get_an_error_reply)
{
	static const char *const requests[] = {
	    "{\"v\":1,\"cmd\":\"policy.apply\",\"document\":\"{}\",\"comment\":\"x\xff\"}",
	    "{\"v\":1,\"cmd\":\"endpoints\",\"node\":\"n\xc3\"}",
	    "{\"v\":1,\"cmd\":\"flows\",\"group\":\"\xed\xa0\x80\"}", /* a surrogate */
	    "{\"v\":1,\"cmd\":\"st\xe9tus\"}",
	    "{\"v\":1,\"cmd\":\"policy.apply\",\"document\":\"{}\",\"comment\":\"a\\u0000b\"}",
	};
	for (size_t i = 0; i < BH_ARRAY_SIZE(requests); i++) {
		json_t *reply = ask_raw(requests[i]);
		CHECK(is_refusal(reply, 2));
		json_decref(reply);
	}
	CHECK(compiler_revision(compiler) == 0);
}

TEST(an_error_cut_inside_a_character_is_still_a_reply)
{
	/* "unknown command \"ééé…\"" is longer than the error buffer. */
	char text[8192] = "{\"v\":1,\"cmd\":\"x"; /* odd: the cut falls inside an é */
	for (int i = 0; i < 1500; i++)
		strcat(text, "\xc3\xa9");
	strcat(text, "\"}");
	json_t *reply = ask_raw(text);
	CHECK(is_refusal(reply, 2));
	CHECK(reply && strstr(json_string_value(json_object_get(reply, "error")), "unknown command"));
	json_decref(reply);
}

TEST(a_policy_path_not_utf8_is_applied_and_shown_escaped)
{
	/* bulkhead-controller --policy PATH: the path is the file name in
	 * errors and the comment of the revision. */
	json_t *r = admin_apply_policy(store, compiler, "{\"version\": 1, \"policies\": [{}]}",
				       "/etc/p\xff.json", "--policy /etc/p\xff.json");
	CHECK(is_refusal(r, 2));
	json_t *e0 = json_array_get(json_object_get(r, "errors"), 0);
	CHECK(e0 && strncmp(json_string_value(e0), "/etc/p\\xff.json: /policies/0", 28) == 0);
	json_decref(r);

	r = admin_apply_policy(store, compiler, POLICY, "/etc/p\xff.json", "--policy /etc/p\xff.json");
	CHECK(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	json_t *hist = ask_raw("{\"v\":1,\"cmd\":\"policy.history\"}");
	json_t *rev = json_array_get(json_object_get(hist, "revisions"), 0);
	CHECK(json_is_true(json_object_get(hist, "ok")));
	CHECK_STR(json_string_value(json_object_get(rev, "comment")), "--policy /etc/p\\xff.json");
	json_decref(hist);
	json_t *show = ask_raw("{\"v\":1,\"cmd\":\"policy.show\"}");
	CHECK(json_is_true(json_object_get(show, "ok")));
	CHECK_STR(json_string_value(json_object_get(show, "comment")), "--policy /etc/p\\xff.json");
	json_decref(show);
}

TEST(a_stored_comment_not_utf8_is_shown_escaped)
{
	/* As an older controller stored a --policy path. */
	int64_t rev = 0;
	CHECK(store_add_revision(store, POLICY, "caf\xe9", &rev) == 0);
	json_t *hist = ask_raw("{\"v\":1,\"cmd\":\"policy.history\"}");
	json_t *first = json_array_get(json_object_get(hist, "revisions"), 0);
	CHECK(json_is_true(json_object_get(hist, "ok")));
	CHECK(json_integer_value(json_object_get(first, "revision")) == rev);
	CHECK_STR(json_string_value(json_object_get(first, "comment")), "caf\\xe9");
	json_decref(hist);
	char text[128];
	snprintf(text, sizeof(text), "{\"v\":1,\"cmd\":\"policy.show\",\"revision\":%lld}", (long long)rev);
	json_t *show = ask_raw(text);
	CHECK(json_is_true(json_object_get(show, "ok")));
	CHECK_STR(json_string_value(json_object_get(show, "comment")), "caf\\xe9");
	json_decref(show);
}

/* ---- on a loop, with a worker ---- */

static struct loop *wloop;
static void *wreq;
static char wreply[1 << 16];
static int wreply_len;

static void on_reply(void *data, uint32_t events)
{
	int n = zmq_recv(wreq, wreply, sizeof(wreply) - 1, ZMQ_DONTWAIT);
	if (n >= 0 && n < (int)sizeof(wreply)) {
		wreply_len = n;
		loop_quit(wloop, 0);
	}
}

static void on_timeout(void *data, uint32_t events)
{
	loop_quit(wloop, 1);
}

/* A request, and the loop run until its reply (5 s at most). */
static json_t *ask_worker(const char *text)
{
	if (zmq_send(wreq, text, strlen(text), 0) < 0)
		return NULL;
	wreply_len = -1;
	struct loop_source *t = loop_add_timer(wloop, 5000, on_timeout, NULL);
	loop_run(wloop);
	loop_remove(wloop, t);
	return wreply_len < 0 ? NULL : json_loadb(wreply, (size_t)wreply_len, 0, NULL);
}

TEST(slow_requests_are_answered_from_the_worker)
{
	wloop = loop_new();
	struct worker *w = worker_new(wloop);
	struct admin_options o = {
	    .endpoint = "inproc://test-admin-worker", .flow_query_ms = 5000, .worker = w};
	char *err = NULL;
	struct admin *a = admin_new(wloop, zctx, &o, store, compiler, NULL, &err);
	CHECK(a != NULL);
	wreq = zmq_socket(zctx, ZMQ_REQ);
	CHECK(zmq_connect(wreq, "inproc://test-admin-worker") == 0);
	struct loop_source *src = loop_add_zmq(wloop, wreq, on_reply, NULL);

	/* Validated on the worker, made a revision on the loop. */
	json_t *r = ask_worker("{\"v\":1,\"cmd\":\"policy.apply\",\"comment\":\"worker\",\"document\":"
			       "\"{\\\"version\\\": 1, \\\"policies\\\": []}\"}");
	CHECK(json_is_true(json_object_get(r, "ok")));
	json_int_t rev = json_integer_value(json_object_get(r, "revision"));
	CHECK(rev > 0 && rev == compiler_revision(compiler));
	json_decref(r);
	r = ask_worker("{\"v\":1,\"cmd\":\"policy.apply\",\"document\":\"{\\\"version\\\": 1, "
		       "\\\"policies\\\": [{}]}\"}");
	CHECK(is_refusal(r, 2) && json_array_size(json_object_get(r, "errors")) > 0);
	CHECK(compiler_revision(compiler) == rev); /* the invalid one changed nothing */
	json_decref(r);
	/* Read on the worker's connection. */
	r = ask_worker("{\"v\":1,\"cmd\":\"policy.show\"}");
	CHECK(json_is_true(json_object_get(r, "ok")));
	CHECK_STR(json_string_value(json_object_get(r, "comment")), "worker");
	json_decref(r);
	r = ask_worker("{\"v\":1,\"cmd\":\"flows\",\"limit\":5}");
	CHECK(json_is_true(json_object_get(r, "ok")) && json_is_array(json_object_get(r, "flows")));
	json_decref(r);
	/* A preview: judged on the worker against the inventory held for it;
	 * the revision in force does not observe all, so none of the period was. */
	r = ask_worker("{\"v\":1,\"cmd\":\"policy.preview\",\"since_seconds\":60,\"document\":"
		       "\"{\\\"version\\\": 1, \\\"observe\\\": \\\"all\\\"}\"}");
	CHECK(json_is_true(json_object_get(r, "ok")) && json_is_array(json_object_get(r, "flows")));
	CHECK(json_integer_value(json_object_get(r, "observed_ms")) == 0);
	CHECK(json_integer_value(json_object_get(r, "until")) -
		  json_integer_value(json_object_get(r, "since")) ==
	      60000);
	CHECK_STR(json_string_value(json_object_get(r, "observe")), "all");
	json_decref(r);
	r = ask_worker(
	    "{\"v\":1,\"cmd\":\"policy.preview\",\"file\":\"p.json\",\"document\":\"{\\\"version\\\": 2}\"}");
	CHECK(json_integer_value(json_object_get(r, "code")) == 2 &&
	      json_array_size(json_object_get(r, "errors")) >= 1);
	CHECK(strncmp(json_string_value(json_object_get(r, "error")) ?: "", "p.json: invalid policy", 22) ==
	      0);
	json_decref(r);
	r = ask_worker("{\"v\":1,\"cmd\":\"policy.preview\",\"since_seconds\":-1,\"document\":\"{}\"}");
	CHECK(json_integer_value(json_object_get(r, "code")) == 2);
	json_decref(r);
	/* Answered at once, in the loop. */
	r = ask_worker("{\"v\":1,\"cmd\":\"policy.history\"}");
	CHECK(json_is_true(json_object_get(r, "ok")));
	json_decref(r);

	loop_remove(wloop, src);
	zmq_close(wreq);
	worker_free(w);
	admin_free(a);
	loop_free(wloop);
}

int main(void)
{
	setup();
	int r = test_main();
	teardown();
	return r;
}
