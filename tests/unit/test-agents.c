/* The controller's agent sessions (controller/agents.c), reached through
 * agents_handle() as the ROUTER's messages are: a routing id names one
 * session. The sockets are inproc, the store is in a temporary directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <zmq.h>

#include "agents.h"
#include "compiler.h"
#include "store.h"
#include "test.h"

static char dir[64];
static void *zctx;
static struct store *store;
static struct compiler *compiler;
static struct agents *agents;
static struct agents_options options = {.listen = "inproc://test-agents", .insecure = true, .heartbeat_ms = 1000};

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/bulkhead-test-agents.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	char *err = NULL;
	store = store_open(dir, &err);
	compiler = compiler_new();
	zctx = zmq_ctx_new();
	agents = store ? agents_new(zctx, &options, compiler, store, &err) : NULL;
	if (!agents) {
		fprintf(stderr, "setup: %s\n", err ? err : "?");
		exit(1);
	}
}

static void teardown(void)
{
	agents_free(agents);
	zmq_ctx_term(zctx);
	compiler_free(compiler);
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
	agents_handle(agents, rid, strlen(rid), NULL, "HELLO", 5, body, strlen(body));
}

/* Whether status shows node connected (-1: not shown). */
static int connected(const char *node)
{
	json_t *nodes = agents_status_nodes(agents), *n;
	size_t i;
	int r = -1;
	json_array_foreach(nodes, i, n) if (strcmp(json_string_value(json_object_get(n, "node")), node) == 0) r =
	    json_is_true(json_object_get(n, "connected"));
	json_decref(nodes);
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
