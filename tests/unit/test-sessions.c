/* The controller's agent sessions (controller/sessions.c), reached through
 * sessions_handle() as the ROUTER's messages are: a routing id names one
 * session. The sockets are inproc, the store is in a temporary directory;
 * the loop is never run (the tests call what its sources would). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <zmq.h>

#include "auth.h"
#include "bulkhead/loop.h"
#include "compiler.h"
#include "node.h"
#include "sessions.h"
#include "store.h"
#include "test.h"

static char dir[64];
static void *zctx;
static struct store *store;
static struct loop *loop;
static struct nodes *nodes;
static struct compiler *compiler;
static struct sessions *sessions;
static struct sessions_options options = {
    .listen = "inproc://test-session", .insecure = true, .heartbeat_ms = 1000};

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/bulkhead-test-session.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	char *err = NULL;
	store = store_open(dir, &err);
	loop = loop_new();
	nodes = nodes_new();
	compiler = compiler_new(nodes);
	zctx = zmq_ctx_new();
	sessions = store ? sessions_new(loop, zctx, &options, nodes, compiler, store, &err) : NULL;
	if (!sessions) {
		fprintf(stderr, "setup: %s\n", err ? err : "?");
		exit(1);
	}
}

static void teardown(void)
{
	sessions_free(sessions);
	zmq_ctx_term(zctx);
	compiler_free(compiler);
	nodes_free(nodes);
	loop_free(loop);
	store_free(store);
	test_remove_dir(dir);
}

static void hello(const char *rid, const char *node)
{
	char body[512];
	snprintf(
	    body, sizeof(body),
	    "{\"v\":1,\"node\":\"%s\",\"agent\":\"0.1.0\",\"revision\":null,\"hash\":null,\"endpoints\":[]}",
	    node);
	sessions_handle(sessions, rid, strlen(rid), NULL, "HELLO", 5, body, strlen(body));
}

/* Whether status shows node connected (-1: not shown). */
static int connected(const char *node)
{
	json_t *list = sessions_status_nodes(sessions), *n;
	size_t i;
	int r = -1;
	json_array_foreach (list, i, n)
		if (strcmp(json_string_value(json_object_get(n, "node")), node) == 0)
			r = json_is_true(json_object_get(n, "connected"));
	json_decref(list);
	return r;
}

/* fuzz-controller found it: the session of n1 and that of n2 both held
 * routing id "r", so n1's bundles went to n2's connection and n2's
 * messages were taken for n1's and dropped. */
TEST(a_hello_on_a_routing_id_ends_the_session_another_node_had_on_it)
{
	hello("r", "n1");
	CHECK(connected("n1") == 1);
	hello("r", "n2");
	CHECK(connected("n2") == 1);
	CHECK(connected("n1") == 0);
	hello("s", "n1"); /* n1 back on a connection of its own */
	CHECK(connected("n1") == 1);
	CHECK(connected("n2") == 1);
	hello("r", "n2"); /* again on its own id: nobody else's session ends */
	CHECK(connected("n1") == 1);
}

/* Whether status shows node as known (-1: not shown). */
static int known(const char *node)
{
	json_t *list = sessions_status_nodes(sessions), *n;
	size_t i;
	int r = -1;
	json_array_foreach (list, i, n)
		if (strcmp(json_string_value(json_object_get(n, "node")), node) == 0)
			r = json_is_true(json_object_get(n, "known"));
	json_decref(list);
	return r;
}

/* With --insecure the known nodes are those seen, until forgotten (the
 * allow-list's are proven by tests/integration/controller.sh). */
TEST(with_insecure_a_node_seen_is_known_until_forgotten)
{
	CHECK(!sessions_known(sessions, "seen") && known("seen") == -1);
	hello("k", "seen");
	CHECK(sessions_known(sessions, "seen") && known("seen") == 1);
	bool was_connected = false;
	CHECK(sessions_forget(sessions, "seen", true, &was_connected) == 0 && was_connected);
	CHECK(!sessions_known(sessions, "seen") && known("seen") == -1);
}

/* ---- silence is judged against what was read ---- */

static int64_t quit_at_ms;
static const char *quit_when_up; /* a node: the loop ends once it is connected */

static void check_quit(void *data, uint32_t events)
{
	if ((quit_when_up && connected(quit_when_up) == 1) || clock_mono_ms() >= quit_at_ms)
		loop_quit(loop, 0);
}

/* Runs the loop (the ROUTER read as the daemon reads it) for up to ms,
 * or until node is connected. */
static void run_loop(int64_t ms, const char *node)
{
	quit_at_ms = clock_mono_ms() + ms;
	quit_when_up = node;
	struct loop_source *t = loop_add_timer(loop, 5, check_quit, NULL);
	loop_run(loop);
	loop_remove(loop, t);
}

static void send_frames(void *sock, const char *type, const char *body)
{
	zmq_send(sock, type, strlen(type), ZMQ_SNDMORE);
	zmq_send(sock, body, strlen(body), 0);
}

/* peer.sh's flood made a live agent look silent on a loaded machine: its
 * heartbeat waited in the socket while the clock ran. Now the tick, however
 * late, does not mark a node down while input waits that may be its. */
TEST(a_heartbeat_waiting_in_the_socket_keeps_its_node_up)
{
	void *d = zmq_socket(zctx, ZMQ_DEALER);
	int zero = 0;
	zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(d, ZMQ_ROUTING_ID, "d1", 2);
	CHECK(zmq_connect(d, options.listen) == 0);
	send_frames(d, "HELLO",
		    "{\"v\":1,\"node\":\"live\",\"agent\":\"0.1.0\",\"revision\":null,\"hash\":null,"
		    "\"endpoints\":[]}");
	run_loop(2000, "live");
	CHECK(connected("live") == 1);
	/* Its next heartbeat is queued, not read; the tick comes 10
	 * heartbeats late (a loop held up that long). */
	send_frames(d, "HEARTBEAT", "{\"v\":1,\"revision\":null,\"hash\":null}");
	usleep(20000);
	sessions_tick(sessions, clock_mono_ms() + 10 * (int64_t)options.heartbeat_ms);
	CHECK(connected("live") == 1);
	/* Read, the socket empty: a node silent for 10 heartbeats since is
	 * down. */
	run_loop(100, NULL);
	CHECK(connected("live") == 1);
	sessions_tick(sessions, clock_mono_ms() + 20 * (int64_t)options.heartbeat_ms);
	CHECK(connected("live") == 0);
	zmq_close(d);
}

/* Lines of the controller's log that hold what, while fn runs. */
static int log_lines(void (*fn)(void), const char *what)
{
	char path[] = "/tmp/bulkhead-test-sessions-log.XXXXXX";
	int fd = mkstemp(path), saved = dup(2);
	fflush(stderr);
	dup2(fd, 2);
	fn();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	FILE *f = fopen(path, "r");
	char line[4096];
	int n = 0;
	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, what) != NULL;
	if (f)
		fclose(f);
	close(fd);
	unlink(path);
	return n;
}

static void malformed_flood(void)
{
	for (int i = 0; i < 1000; i++)
		sessions_handle(sessions, "x9", 2, NULL, "NOPE", 4, "{}", 2);
}

static void hello_flood(void)
{
	for (int i = 0; i < 1000; i++)
		hello("x9", "bad name");
}

/* Issue 11: a peer could make the controller write a line for every
 * message it sent wrong. */
TEST(a_flood_of_malformed_messages_and_refused_hellos_is_logged_a_few_times)
{
	int malformed = log_lines(malformed_flood, "dropped a malformed message");
	int refused = log_lines(hello_flood, "refused HELLO");
	printf("  # 1000 malformed messages: %d line(s); 1000 refused HELLOs: %d line(s)\n", malformed,
	       refused);
	CHECK(malformed >= 1 && malformed <= 10);
	CHECK(refused >= 1 && refused <= 10);
}

static void no_rules_changed(void *data, struct node *n)
{
}

static void count_listed(void *data, const char *node)
{
	(*(int *)data)++;
}

static void write_file(const char *dir_, const char *name, const char *text)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir_, name);
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		abort();
}

/* NODE.key in the allow-list says node NODE exists; a key file that
 * cannot be read (cut short by an editor, garbled) keeps it from
 * connecting, not from being known: status shows it down and --wait
 * waits for it (it was left out of both, so --wait said converged while
 * the node was down). */
TEST(a_node_whose_key_file_cannot_be_read_is_known_all_the_same)
{
	char adir[64] = "/tmp/bulkhead-test-allow.XXXXXX";
	char pub[41], sec[41];
	CHECK(mkdtemp(adir) != NULL);
	CHECK(zmq_curve_keypair(pub, sec) == 0);
	char line[64];
	snprintf(line, sizeof(line), "%s\n", pub);
	write_file(adir, "good.key", line);
	write_file(adir, "bad.key", "not a key\n");
	void *ctx = zmq_ctx_new();
	struct nodes *t = nodes_new();
	char *err = NULL;
	struct auth *a = auth_new(loop, ctx, adir, t, no_rules_changed, NULL, &err);
	CHECK(a != NULL);
	if (a) {
		auth_reload(a, 0);
		CHECK(auth_listed(a, "good"));
		CHECK(auth_listed(a, "bad"));
		CHECK(!auth_listed(a, "other"));
		int n = 0;
		auth_each_listed(a, count_listed, &n);
		CHECK(n == 2);
		/* Known is not allowed: its endpoints are refused like any
		 * node's the allow-list does not let in. */
		struct diag d;
		diag_init(&d, "bad");
		json_t *none = json_array();
		CHECK(auth_check_labels(a, "bad", none, &d) == -EPERM);
		json_decref(none);
		diag_release(&d);
		/* The directory cannot be read at all for a while (replaced,
		 * its mode changed): nobody connects, and its nodes are still
		 * known (it said converged with no node at all). */
		char moved[80];
		snprintf(moved, sizeof(moved), "%s.moved", adir);
		CHECK(rename(adir, moved) == 0);
		auth_reload(a, 0);
		CHECK(auth_listed(a, "good") && auth_listed(a, "bad"));
		auth_reload(a, 0); /* and again: what it knew, not nothing */
		n = 0;
		auth_each_listed(a, count_listed, &n);
		CHECK(n == 2);
		CHECK(rename(moved, adir) == 0);
		auth_reload(a, 0);
		CHECK(auth_listed(a, "good") && auth_listed(a, "bad"));
		auth_free(a);
	}
	free(err);
	zmq_ctx_term(ctx);
	nodes_free(t);
	static const char *const files[] = {"good.key", "bad.key"};
	for (size_t i = 0; i < BH_ARRAY_SIZE(files); i++) {
		char path[256];
		snprintf(path, sizeof(path), "%s/%s", adir, files[i]);
		unlink(path);
	}
	rmdir(adir);
}

int main(void)
{
	setup();
	int r = test_main();
	teardown();
	return r;
}
