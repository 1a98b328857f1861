/* The controller's agent sessions (controller/sessions.c), reached through
 * sessions_handle() as the ROUTER's messages are: a routing id names one
 * session. The sockets are inproc, the store is in a temporary directory;
 * the loop is never run (the tests call what its sources would). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <zmq.h>

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
static struct sessions_options options = {.listen = "inproc://test-session", .insecure = true, .heartbeat_ms = 1000};

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
	static const char *const names[] = {STORE_FILE, STORE_FILE "-wal", STORE_FILE "-shm"};
	char path[128];
	for (size_t i = 0; i < BH_ARRAY_SIZE(names); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}

static void hello(const char *rid, const char *node)
{
	char body[512];
	snprintf(body, sizeof(body),
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
	json_array_foreach(list, i, n) if (strcmp(json_string_value(json_object_get(n, "node")), node) == 0) r =
	    json_is_true(json_object_get(n, "connected"));
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

int main(void)
{
	setup();
	int r = test_main();
	teardown();
	return r;
}
