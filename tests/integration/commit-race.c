/* commit-race: the nft dataplane does not listen to nftables events while
 * it commits (its own would cost one event per element, drift.h), so a
 * change another process commits right after one of ours, before the
 * watch listens again, reaches it by no event. It must be noticed all the
 * same, by the generation (dataplane-nft.c, commit()): such a change is
 * committed from the request's sent() hook, in that very window, in the
 * endpoint's own namespace and in another endpoint's whose watch a big
 * commit stops too; and one just after the load is heard as an event.
 * The table is big enough (4,200 elements) for the other watches to stop.
 *
 *   commit-race NETNS_A NETNS_B    (root; commit-race.sh makes them)
 * Prints "ok N - name" lines and "N passed, N failed". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../unit/scenario.h"
#include "../unit/test.h"
#include "bulkhead/loop.h"
#include "dataplane.h"

#define PEERS 2100 /* remote endpoints, an IPv4 and an IPv6 address each */

static const char *path_a, *path_b;

/* What the dataplane told of one endpoint. */
struct heard {
	unsigned foreign, lost;
};

static void on_foreign(void *data, const struct drift_report *rep)
{
	((struct heard *)data)->foreign++;
}

static void on_lost(void *data)
{
	((struct heard *)data)->lost++;
}

static const struct dataplane_events events = {.foreign = on_foreign, .lost = on_lost};

/* nft ARGS... run in the namespace at path, as another process would. */
static int nft_in(const char *path, const char *cmd)
{
	char line[512];

	snprintf(line, sizeof(line), "nsenter --net=%s nft %s", path, cmd);
	int st = system(line);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

struct world {
	struct loop *loop;
	struct dataplane *dp;
	struct dataplane_ep *a, *b;
	struct heard heard_a, heard_b;
	struct bundle *bundle;
	const struct bundle_endpoint *ep_a, *ep_b;
	/* what sent() commits, once, and where */
	const char *race_path, *race_cmd;
	unsigned raced;
};

static void race(void *arg)
{
	struct world *w = arg;

	if (!w->race_cmd || w->raced)
		return;
	w->raced = 1;
	CHECK(nft_in(w->race_path, w->race_cmd) == 0);
}

/* Runs the loop until nothing more is ready (deferred calls, events). */
static void settle(struct world *w)
{
	for (int i = 0; i < 20; i++) {
		CHECK(loop_run_once(w->loop) == 0);
		usleep(10000);
	}
}

static char *inventory_text(void)
{
	size_t cap = 256 + PEERS * 128, n = 0;
	char *s = malloc(cap);

	if (!s)
		abort();
	n += (size_t)snprintf(s + n, cap - n,
			      "{\"node\":\"n\",\"endpoints\":["
			      "{\"name\":\"a\",\"labels\":{\"app\":\"svc\"},\"addresses\":[\"198.18.0.1\"]},"
			      "{\"name\":\"b\",\"labels\":{\"app\":\"svc\"},\"addresses\":[\"198.18.0.2\"]}");
	for (int i = 0; i < PEERS; i++)
		n += (size_t)snprintf(s + n, cap - n,
				      ",{\"name\":\"p%04d\",\"labels\":{\"app\":\"peer\"},"
				      "\"addresses\":[\"198.18.%d.%d\",\"2001:db8:1::%x\"]}",
				      i, 16 + i / 250, i % 250 + 1, i + 1);
	snprintf(s + n, cap - n, "]}");
	return s;
}

static const char policy[] =
    "{\"version\":1,\"groups\":{\"svc\":{\"labels\":{\"app\":\"svc\"}},\"peer\":{\"labels\":{\"app\":"
    "\"peer\"}}},\"policies\":[{\"name\":\"svc\",\"applies_to\":\"svc\",\"ingress\":"
    "[{\"from\":[\"peer\"],\"ports\":[\"tcp/80\"]}]}]}";

static struct world W;

static int world_open(void)
{
	char err[256];
	struct netns_id id;
	char *inv = inventory_text();

	W.bundle = scenario_compile(policy, inv, "n", INVENTORY_NEED_ADDRESSES);
	free(inv);
	W.loop = loop_new();
	W.dp = W.loop ? dataplane_nft_new(W.loop, 100, NFT_FORM_LINEAR) : NULL;
	if (!W.bundle || !W.dp)
		return -1;
	W.ep_a = bundle_find_endpoint(W.bundle, "a");
	W.ep_b = bundle_find_endpoint(W.bundle, "b");
	if (dataplane_open(W.dp, "a", path_a, &W.a, &id, err, sizeof(err)) < 0 ||
	    dataplane_attach(W.a, 0, &events, &W.heard_a, err, sizeof(err)) < 0 ||
	    dataplane_open(W.dp, "b", path_b, &W.b, &id, err, sizeof(err)) < 0 ||
	    dataplane_attach(W.b, 0, &events, &W.heard_b, err, sizeof(err)) < 0) {
		fprintf(stderr, "commit-race: %s\n", err);
		return -1;
	}
	return 0;
}

/* Loads a's table whole; sent() commits cmd in path right after, once. */
static int load_a(const char *path, const char *cmd, struct dataplane_result *res)
{
	struct dataplane_apply req = {.name = "a", .b = W.bundle, .ep = W.ep_a, .sent = race, .arg = &W};

	W.race_path = path;
	W.race_cmd = cmd;
	W.raced = 0;
	memset(&W.heard_a, 0, sizeof(W.heard_a));
	memset(&W.heard_b, 0, sizeof(W.heard_b));
	return dataplane_apply(W.a, &req, res);
}

/* ep's table is (b, bep), read back. */
static bool table_is(struct dataplane_ep *ep, const struct bundle_endpoint *bep)
{
	char why[256];
	bool read;

	return dataplane_verify(ep, W.bundle, bep, NULL, &read, why, sizeof(why)) == 1;
}

TEST(a_load_nobody_races_is_clean_and_not_read_back)
{
	struct dataplane_result res;
	struct dataplane_apply req = {.name = "b", .b = W.bundle, .ep = W.ep_b};

	CHECK(dataplane_apply(W.b, &req, &res) == 0 && res.committed);
	CHECK(load_a(NULL, NULL, &res) == 0 && res.committed);
	CHECK(res.stats.elements >= 4096); /* the other endpoint's watch stopped too */
	CHECK(res.checks == 0 && res.tampered == 0 && !res.unsettled);
	settle(&W);
	CHECK(W.heard_a.foreign == 0 && W.heard_a.lost == 0);
	CHECK(W.heard_b.foreign == 0 && W.heard_b.lost == 0);
}

TEST(a_rule_added_right_after_our_commit_is_found_and_taken_out)
{
	struct dataplane_result res;

	CHECK(load_a(path_a, "insert rule inet bulkhead ingress accept", &res) == 0);
	CHECK(W.raced == 1);
	CHECK(res.checks == 1 && res.tampered == 1 && !res.unsettled);
	CHECK(res.full_commits == 2); /* put back at once */
	CHECK(table_is(W.a, W.ep_a));
}

TEST(a_commit_elsewhere_in_the_namespace_is_read_back_and_left_alone)
{
	struct dataplane_result res;

	CHECK(load_a(path_a, "add table inet other", &res) == 0);
	CHECK(W.raced == 1);
	CHECK(res.checks == 1 && res.tampered == 0 && res.full_commits == 1);
	CHECK(table_is(W.a, W.ep_a));
	CHECK(nft_in(path_a, "delete table inet other") == 0);
}

TEST(a_change_in_a_namespace_whose_watch_was_stopped_counts_as_lost_events)
{
	struct dataplane_result res;

	CHECK(load_a(path_b, "insert rule inet bulkhead ingress accept", &res) == 0);
	CHECK(W.raced == 1 && res.checks == 0);
	settle(&W);
	CHECK(W.heard_b.lost == 1); /* the core then verifies b: */
	CHECK(!table_is(W.b, W.ep_b));
	CHECK(W.heard_a.foreign == 0 && W.heard_a.lost == 0);
}

TEST(a_change_just_after_the_load_is_heard)
{
	struct dataplane_result res;

	CHECK(load_a(NULL, NULL, &res) == 0 && res.checks == 0);
	CHECK(nft_in(path_a, "insert rule inet bulkhead ingress accept") == 0);
	settle(&W);
	CHECK(W.heard_a.foreign == 1);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: commit-race NETNS_A NETNS_B\n");
		return 2;
	}
	path_a = argv[1];
	path_b = argv[2];
	if (world_open() < 0) {
		printf("not ok 1 - the world\n0 passed, 1 failed\n");
		return 1;
	}
	int r = test_main();
	dataplane_close(W.a);
	dataplane_close(W.b);
	dataplane_free(W.dp);
	loop_free(W.loop);
	bundle_free(W.bundle);
	return r;
}
