/* The controller's compiler (controller/compiler.c) recompiles only the
 * nodes whose inputs changed — the policy, the node's own endpoints, the
 * members of the label groups its bundle holds — and every bundle it keeps
 * is the one a compilation from scratch gives (checked after every step,
 * and after each of many random changes). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "bulkhead/compile.h"
#include "bulkhead/log.h"
#include "bulkhead/loop.h"
#include "bulkhead/worker.h"
#include "bulkhead/proto.h"
#include "compiler.h"
#include "node.h"
#include "test.h"

/* db accepts web on tcp/5432; web may reach db; ops is a network; batch
 * is in no group any rule names. */
#define POLICY                                                                                               \
	"{\"version\": 1, \"groups\": {\"web\": {\"labels\": {\"app\": \"web\"}}, \"db\": {\"labels\": "     \
	"{\"app\": "                                                                                         \
	"\"db\"}}, \"ops\": {\"cidrs\": [\"203.0.113.0/24\"]}},"                                             \
	" \"policies\": [{\"name\": \"db-in\", \"applies_to\": \"db\", \"ingress\": [{\"from\": [\"web\", "  \
	"\"ops\"], \"ports\": [\"tcp/5432\"]}]},"                                                            \
	" {\"name\": \"web-out\", \"applies_to\": \"web\", \"egress\": [{\"to\": [\"db\"]}, {\"action\": "   \
	"\"deny\", \"to\": [\"web\"]}]}]}"

static struct policy_doc *policy(const char *text)
{
	struct diag d;
	diag_init(&d, "policy");
	struct policy_doc *doc = policy_parse_string(text, strlen(text), &d);
	if (!doc) {
		diag_print(&d, stderr);
		abort();
	}
	diag_release(&d);
	return doc;
}

/* node's endpoint list is list (taken); a list the compiler refuses
 * ends the test run with its problems. */
static void put_list(struct compiler *c, const char *node, json_t *list)
{
	struct diag d;
	diag_init(&d, node);
	if (!list || compiler_set_endpoints(c, node, list, &d) < 0) {
		diag_print(&d, stderr);
		abort();
	}
	diag_release(&d);
	json_decref(list);
}

/* node's list: "name:app:address[,address]" entries. */
static void set(struct compiler *c, const char *node, const char *const *eps, size_t n)
{
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++) {
		char name[64], app[64], addrs[256];
		if (sscanf(eps[i], "%63[^:]:%63[^:]:%255s", name, app, addrs) != 3)
			abort();
		json_t *a = json_array();
		for (char *tok = strtok(addrs, ","); tok; tok = strtok(NULL, ","))
			json_array_append_new(a, json_string(tok));
		json_array_append_new(list, json_pack("{s:s,s:n,s:{s:s},s:o}", "name", name, "netns",
						      "labels", "app", app, "addresses", a));
	}
	put_list(c, node, list);
}

/* Whether every node's bundle is the one compiling from scratch gives. */
static bool all_as_from_scratch(struct compiler *c, struct nodes *t)
{
	struct inventory *inv = inventory_new();
	struct diag d;
	diag_init(&d, "check");
	for (size_t i = 0; i < nodes_count(t); i++) {
		struct node *n = nodes_at(t, i);
		if (!n->endpoints)
			continue;
		json_t *doc = proto_endpoints_inventory(n->name, n->endpoints);
		if (inventory_load_json(inv, doc, n->name, INVENTORY_NEED_ADDRESSES, &d) < 0)
			abort();
		json_decref(doc);
	}
	if (inventory_finish(inv, &d) < 0)
		abort();
	diag_release(&d);
	bool same = true;
	for (size_t i = 0; i < nodes_count(t); i++) {
		struct node *n = nodes_at(t, i);
		const char *hash = NULL;
		json_t *have = compiler_bundle(c, n->name, &hash);
		if (!n->endpoints || !compiler_policy(c)) {
			same &= !have;
			continue;
		}
		struct bundle *b = compile_bundle(compiler_policy(c), inv, n->name);
		if (!have || strcmp(hash, b->hash) != 0) {
			fprintf(stderr, "  # node %s: %.12s, from scratch %.12s\n", n->name,
				have ? hash : "none", b->hash);
			same = false;
		}
		bundle_free(b);
	}
	inventory_free(inv);
	return same;
}

/* Compilations a refresh makes. */
static uint64_t refresh(struct compiler *c)
{
	uint64_t before = compiler_compilations(c);
	compiler_refresh(c);
	return compiler_compilations(c) - before;
}

TEST(only_the_nodes_whose_inputs_changed_are_recompiled)
{
	struct nodes *t = nodes_new();
	struct compiler *c = compiler_new(t);
	set(c, "a", (const char *[]){"web-1:web:198.18.0.1"}, 1);
	set(c, "b", (const char *[]){"db-1:db:198.18.0.2"}, 1);
	set(c, "c", (const char *[]){"batch-1:batch:198.18.0.3"}, 1);
	set(c, "d", (const char *[]){"batch-2:batch:198.18.0.4"}, 1);
	CHECK(refresh(c) == 0); /* no policy: nothing to compile */
	compiler_set_policy(c, 1, policy(POLICY));
	CHECK(refresh(c) == 4);
	CHECK(all_as_from_scratch(c, t));
	CHECK(refresh(c) == 0);

	/* An endpoint in no group the rules name: its node alone. */
	set(c, "c", (const char *[]){"batch-1:batch:198.18.0.33"}, 1);
	CHECK(refresh(c) == 1);
	CHECK(all_as_from_scratch(c, t));

	/* A web member moves: a (its own), and b, whose ingress names web. */
	set(c, "a", (const char *[]){"web-1:web:198.18.0.11"}, 1);
	CHECK(refresh(c) == 2);
	CHECK(all_as_from_scratch(c, t));

	/* A new db member on d: d, and a, whose egress names db; not b (its
	 * rules name web and a network). */
	set(c, "d", (const char *[]){"batch-2:batch:198.18.0.4", "db-2:db:198.18.0.5"}, 2);
	CHECK(refresh(c) == 2);
	CHECK(all_as_from_scratch(c, t));

	/* The same list again: nothing. */
	set(c, "d", (const char *[]){"batch-2:batch:198.18.0.4", "db-2:db:198.18.0.5"}, 2);
	CHECK(refresh(c) == 0);

	/* c claims a's address: contested, it leaves web's allow set (b's
	 * and d's ingress) and stays in web#deny (a's egress): a, b, c, d. */
	set(c, "c", (const char *[]){"batch-1:batch:198.18.0.33,198.18.0.11"}, 1);
	CHECK(refresh(c) == 4);
	CHECK(all_as_from_scratch(c, t));

	/* The policy: every node. */
	compiler_set_policy(c, 2, policy(POLICY));
	CHECK(refresh(c) == 4);
	CHECK(all_as_from_scratch(c, t));

	/* A node forgotten: its endpoints leave web; who names web. */
	compiler_forget_node(c, "a");
	CHECK(refresh(c) == 2); /* b and d; a has nothing left to compile */
	CHECK(all_as_from_scratch(c, t));
	compiler_free(c);
	nodes_free(t);
}

/* Named ports (DESIGN §2): client reaches web on tcp/http (a table of what
 * every endpoint calls http), db takes tcp/pg (its own number), batch
 * denies udp/dns anywhere (the deny table). */
#define NAMED_POLICY                                                                                         \
	"{\"version\": 1, \"groups\": {\"web\": {\"labels\": {\"app\": \"web\"}}}, \"policies\": ["          \
	"{\"name\": \"cl-out\", \"applies_to\": {\"labels\": {\"app\": \"client\"}}, \"egress\": [{\"to\": " \
	"[\"web\"], \"ports\": [\"tcp/http\"]}]},"                                                           \
	"{\"name\": \"db-in\", \"applies_to\": {\"labels\": {\"app\": \"db\"}}, \"ingress\": [{\"ports\": "  \
	"[\"tcp/pg\"]}]},"                                                                                   \
	"{\"name\": \"batch-out\", \"applies_to\": {\"labels\": {\"app\": \"batch\"}}, \"egress\": "         \
	"[{\"action\": \"deny\", \"ports\": [\"udp/dns\"]}]}]}"

/* One endpoint "name" of app with one address and its "ports" (JSON). */
static void set_named(struct compiler *c, const char *node, const char *name, const char *app,
		      const char *addr, const char *ports)
{
	put_list(c, node,
		 json_pack("[{s:s,s:n,s:{s:s},s:[s],s:o}]", "name", name, "netns", "labels", "app", app,
			   "addresses", addr, "ports", json_loads(ports, 0, NULL)));
}

TEST(a_named_port_change_recompiles_who_resolves_or_tables_the_name)
{
	struct nodes *t = nodes_new();
	struct compiler *c = compiler_new(t);
	set_named(c, "a", "client-1", "client", "198.18.0.1", "{}");
	set_named(c, "b", "web-1", "web", "198.18.0.2", "{\"http\": \"tcp/8080\"}");
	set_named(c, "c", "db-1", "db", "198.18.0.3", "{\"pg\": \"tcp/5432\"}");
	set_named(c, "d", "batch-1", "batch", "198.18.0.4", "{}");
	set_named(c, "e", "other-1", "other", "198.18.0.5", "{\"http\": \"tcp/80\"}");
	compiler_set_policy(c, 1, policy(NAMED_POLICY));
	CHECK(refresh(c) == 5);
	CHECK(all_as_from_scratch(c, t));
	const char *hash = NULL;
	json_t *bundle = compiler_bundle(c, "a", &hash);
	CHECK(bundle && json_array_size(json_object_get(bundle, "named_ports")) == 1);
	char before[BUNDLE_HASH_HEX + 1];
	snprintf(before, sizeof(before), "%s", hash ? hash : "");

	/* web-1 renumbers http: b (its own list) and a (its tcp/http table);
	 * not c (no name of its rules changed) nor d (dns). */
	set_named(c, "b", "web-1", "web", "198.18.0.2", "{\"http\": \"tcp/8081\"}");
	CHECK(refresh(c) == 2);
	CHECK(all_as_from_scratch(c, t));
	CHECK(compiler_bundle(c, "a", &hash) && strcmp(hash, before) != 0);

	/* The table holds what every endpoint calls http, in web or not. */
	set_named(c, "e", "other-1", "other", "198.18.0.5", "{\"http\": \"tcp/81\"}");
	CHECK(refresh(c) == 2);
	CHECK(all_as_from_scratch(c, t));

	/* db-1 renumbers pg: its ingress resolves it; no other node cares. */
	set_named(c, "c", "db-1", "db", "198.18.0.3", "{\"pg\": \"tcp/5433\"}");
	CHECK(refresh(c) == 1);
	CHECK(all_as_from_scratch(c, t));

	/* other-1 gains dns: e and d (batch's udp/dns#deny table). */
	set_named(c, "e", "other-1", "other", "198.18.0.5", "{\"http\": \"tcp/81\", \"dns\": \"udp/53\"}");
	CHECK(refresh(c) == 2);
	CHECK(all_as_from_scratch(c, t));

	/* A name with another protocol is not the name: d's table is the same. */
	set_named(c, "b", "web-1", "web", "198.18.0.2", "{\"http\": \"tcp/8081\", \"dns\": \"tcp/53\"}");
	CHECK(refresh(c) == 1);
	CHECK(all_as_from_scratch(c, t));
	compiler_free(c);
	nodes_free(t);
}

/* steps random changes to c (change makes the step's), each refreshed and
 * compared with the bundles compiled from scratch: how many steps
 * differed; *compiled, the compilations the refreshes did. The compiler
 * logs every address conflict, hundreds here: stderr is /dev/null
 * meanwhile. */
static uint64_t random_steps(struct compiler *c, struct nodes *t, uint64_t steps,
			     void (*change)(struct compiler *c, uint64_t step), uint64_t *compiled)
{
	uint64_t failures = 0;
	int saved = dup(2), null = open("/dev/null", O_WRONLY);
	dup2(null, 2);
	*compiled = 0;
	for (uint64_t step = 0; step < steps; step++) {
		change(c, step);
		*compiled += refresh(c);
		if (!all_as_from_scratch(c, t))
			failures++;
	}
	dup2(saved, 2);
	close(saved);
	close(null);
	return failures;
}

/* A random list of 0-2 endpoints for one of 4 nodes, each naming ports
 * now and then, with other numbers and protocols. */
static void random_named_change(struct compiler *c, uint64_t step)
{
	static const char *const nodes[] = {"n1", "n2", "n3", "n4"};
	static const char *const apps[] = {"web", "db", "batch", "client"};
	static const char *const http[] = {NULL, "tcp/80", "tcp/81", "udp/80"};
	const char *node = nodes[rand() % 4];
	json_t *list = json_array();
	(void)step;
	for (int i = rand() % 3; i > 0; i--) {
		char name[16], addr[32];
		snprintf(name, sizeof(name), "e%d", i);
		snprintf(addr, sizeof(addr), "198.18.0.%d", 1 + rand() % 8);
		json_t *ports = json_object();
		const char *h = http[rand() % 4];
		if (h)
			json_object_set_new(ports, "http", json_string(h));
		if (rand() % 3 == 0)
			json_object_set_new(ports, rand() % 2 ? "pg" : "dns",
					    json_string(rand() % 2 ? "udp/53" : "tcp/5432"));
		json_array_append_new(list, json_pack("{s:s,s:n,s:{s:s},s:[s],s:o}", "name", name, "netns",
						      "labels", "app", apps[rand() % 4], "addresses", addr,
						      "ports", ports));
	}
	put_list(c, node, list);
}

/* Random lists whose endpoints name ports now and then, with other
 * numbers and protocols (and contested addresses): every bundle stays as
 * from scratch, and not every node is compiled at each step. */
TEST(random_named_port_changes_keep_every_bundle_as_from_scratch)
{
	struct nodes *t = nodes_new();
	struct compiler *c = compiler_new(t);
	compiler_set_policy(c, 1, policy(NAMED_POLICY));
	srand(13);
	uint64_t compiled, steps = 200, failures = random_steps(c, t, steps, random_named_change, &compiled);
	CHECK(failures == 0);
	CHECK(compiled < steps * 4);
	printf("  # %llu of %llu steps differ from scratch; %llu compilations over %llu changes of 4 nodes\n",
	       (unsigned long long)failures, (unsigned long long)steps, (unsigned long long)compiled,
	       (unsigned long long)steps);
	compiler_free(c);
	nodes_free(t);
}

TEST(a_stale_node_has_no_bundle_until_it_is_compiled)
{
	struct nodes *t = nodes_new();
	struct compiler *c = compiler_new(t);
	compiler_set_policy(c, 1, policy(POLICY));
	set(c, "a", (const char *[]){"web-1:web:198.18.0.1"}, 1);
	set(c, "b", (const char *[]){"db-1:db:198.18.0.2"}, 1);
	compiler_refresh(c);
	CHECK(compiler_bundle(c, "b", NULL) != NULL);
	set(c, "a", (const char *[]){"web-1:web:198.18.0.9"}, 1);
	CHECK(compiler_changed(c));
	CHECK(compiler_bundle(c, "b", NULL) == NULL); /* its set of web is out of date */
	CHECK(!compiler_changed(c));
	/* One at a time: the first node compiled, the other still waits. */
	CHECK(compiler_compile(c, 0, NULL, NULL) == 1);
	CHECK((compiler_bundle(c, "a", NULL) != NULL) != (compiler_bundle(c, "b", NULL) != NULL));
	CHECK(compiler_compile(c, 0, NULL, NULL) == 0);
	CHECK(all_as_from_scratch(c, t));
	compiler_free(c);
	nodes_free(t);
}

/* A random list of 0-3 endpoints for one of 5 nodes, some with an IPv6
 * address too; every 50 steps, the policy again as a new revision. */
static void random_change(struct compiler *c, uint64_t step)
{
	static const char *const nodes[] = {"n1", "n2", "n3", "n4", "n5"};
	static const char *const apps[] = {"web", "db", "batch"};
	const char *node = nodes[rand() % 5];
	char eps[3][96];
	const char *v[3];
	int n = rand() % 4;
	for (int i = 0; i < n; i++) {
		char v6[32] = "";
		if (rand() % 3 == 0)
			snprintf(v6, sizeof(v6), ",2001:db8::%d", 1 + rand() % 4);
		snprintf(eps[i], sizeof(eps[i]), "e%d:%s:198.18.0.%d%s", i, apps[rand() % 3], 1 + rand() % 12,
			 v6);
		v[i] = eps[i];
	}
	set(c, node, v, (size_t)n);
	if (step % 50 == 25)
		compiler_set_policy(c, 2 + (int64_t)step, policy(POLICY));
}

/* Many random lists over a few labels and a small pool of addresses (so
 * that addresses are contested now and then): after each change, every
 * bundle is as from scratch. */
TEST(random_changes_keep_every_bundle_as_from_scratch)
{
	struct nodes *t = nodes_new();
	struct compiler *c = compiler_new(t);
	compiler_set_policy(c, 1, policy(POLICY));
	srand(11);
	uint64_t compiled, steps = 300, failures = random_steps(c, t, steps, random_change, &compiled);
	CHECK(failures == 0);
	printf("  # %llu of %llu steps differ from scratch\n", (unsigned long long)failures,
	       (unsigned long long)steps);
	/* Fewer than every node each step. */
	CHECK(compiled < steps * 5);
	printf("  # %llu compilations over %llu changes of 5 nodes\n", (unsigned long long)compiled,
	       (unsigned long long)steps);
	compiler_free(c);
	nodes_free(t);
}

/* ---- off the loop ---- */

static struct loop *loop;
static int compiled_left;

static void on_compiled(void *data, struct node *n)
{
	if (--compiled_left <= 0)
		loop_quit(loop, 0);
}

static void on_timeout(void *data, uint32_t events)
{
	loop_quit(loop, 1);
}

/* Runs the loop until want more nodes are compiled (10 s at most). */
static int run_until_compiled(int want)
{
	compiled_left = want;
	struct loop_source *t = loop_add_timer(loop, 10000, on_timeout, NULL);
	int r = loop_run(loop);
	loop_remove(loop, t);
	return r;
}

/* Jobs compile from the inputs of the moment they were queued: what changed
 * meanwhile decides which results are taken. */
TEST(with_a_worker_a_result_is_taken_unless_its_inputs_changed_meanwhile)
{
	struct nodes *t = nodes_new();
	struct compiler *c = compiler_new(t);
	loop = loop_new();
	struct worker *w = worker_new(loop);
	compiler_use_worker(c, w);
	compiler_set_policy(c, 1, policy(POLICY));
	set(c, "a", (const char *[]){"web-1:web:198.18.0.1"}, 1);
	set(c, "b", (const char *[]){"db-1:db:198.18.0.2"}, 1);
	set(c, "c", (const char *[]){"batch-1:batch:198.18.0.3"}, 1);
	set(c, "d", (const char *[]){"batch-2:batch:198.18.0.4"}, 1);
	CHECK(compiler_compile(c, 0, on_compiled, NULL) == 0); /* queued */
	CHECK(compiler_bundle(c, "a", NULL) == NULL);	       /* not compiled yet */
	/* Before any result is taken: c's list changes (no group holds it),
	 * and a's web member moves (b's ingress names web). */
	set(c, "c", (const char *[]){"batch-1:batch:198.18.0.33"}, 1);
	set(c, "a", (const char *[]){"web-1:web:198.18.0.11"}, 1);
	CHECK(run_until_compiled(4) == 0);
	/* d's result taken; a's, b's and c's compiled again. */
	CHECK(compiler_compilations(c) == 7);
	CHECK(all_as_from_scratch(c, t));
	worker_free(w);
	loop_free(loop);
	compiler_free(c);
	nodes_free(t);
}

int main(void)
{
	log_setup("test-compiler", false);
	return test_main();
}
