/* bulkhead status (per known node, down ones too: connected, heartbeat,
 * applied revision, in sync, errors; --wait until every known node is up
 * and in sync) and bulkhead endpoints. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bulkhead/escape.h"
#include "bulkhead/inventory.h"
#include "cli.h"
#include "table.h"
#include "verb.h"

/* Whether --wait waits for node: every known node (DESIGN §4), and one
 * connected all the same (a controller without "known" says nothing of
 * the others). */
static bool status_waited(json_t *node)
{
	return json_is_true(json_object_get(node, "known")) ||
	       json_is_true(json_object_get(node, "connected"));
}

/* The nodes --wait still waits for, comma-separated, each with why: down
 * or behind (empty: converged). */
static void status_lagging(json_t *reply, char *buf, size_t n)
{
	buf[0] = '\0';
	size_t i, more = 0;
	json_t *node;
	json_array_foreach (json_object_get(reply, "nodes"), i, node) {
		if (!status_waited(node))
			continue;
		bool up = json_is_true(json_object_get(node, "connected"));
		if (up && json_is_true(json_object_get(node, "up_to_date")))
			continue;
		size_t len = strlen(buf);
		char one[512];
		snprintf(one, sizeof(one), "%s%s (%s)", len ? ", " : "",
			 ESCAPED(verb_str(json_object_get(node, "node"), "?")), up ? "behind" : "down");
		if (more || len + strlen(one) + 32 >= n)
			more++;
		else
			memcpy(buf + len, one, strlen(one) + 1);
	}
	if (more)
		snprintf(buf + strlen(buf), n - strlen(buf), " and %zu more", more);
}

static void status_print(json_t *reply)
{
	json_t *rev = json_object_get(reply, "revision");
	bool policy = json_is_integer(rev);
	if (policy)
		printf("policy revision %lld\n", (long long)json_integer_value(rev));
	else
		printf("no policy applied yet\n");
	json_int_t now = json_integer_value(json_object_get(reply, "time"));
	struct table *t = table_new(7);
	table_add(t, "NODE", "STATE", "HEARTBEAT", "REVISION", "IN-SYNC", "ENDPOINTS", "ERRORS");
	size_t i, k;
	json_t *node, *e;
	json_array_foreach (json_object_get(reply, "nodes"), i, node) {
		char hb[32] = "-", applied[32] = "-", eps[32], errs[32];
		json_t *last = json_object_get(node, "last_heartbeat");
		if (json_is_integer(last))
			snprintf(hb, sizeof(hb), "%.1fs ago",
				 (double)(now - json_integer_value(last)) / 1000.0);
		if (json_is_integer(json_object_get(node, "applied_revision")))
			snprintf(applied, sizeof(applied), "%lld",
				 (long long)json_integer_value(json_object_get(node, "applied_revision")));
		snprintf(eps, sizeof(eps), "%lld",
			 (long long)json_integer_value(json_object_get(node, "endpoints")));
		snprintf(errs, sizeof(errs), "%zu", json_array_size(json_object_get(node, "errors")));
		/* No policy: nothing to be in sync with ("-"), unless the node
		 * enforces a bundle from before (said below). */
		bool up = json_is_true(json_object_get(node, "up_to_date"));
		/* Not known: its key left the allow-list; nothing waits for it. */
		bool known = !json_is_false(json_object_get(node, "known"));
		const char *state = json_is_true(json_object_get(node, "connected"))
					? (known ? "up" : "up (no key)")
					: (known ? "down" : "down (no key)");
		table_add(t, verb_str(json_object_get(node, "node"), "?"), state, hb, applied,
			  up ? (policy ? "yes" : "-") : "no", eps, errs);
	}
	table_print(t);
	json_array_foreach (json_object_get(reply, "nodes"), i, node) {
		if (policy || json_is_true(json_object_get(node, "up_to_date")) ||
		    !json_is_string(json_object_get(node, "applied_hash")))
			continue;
		json_t *held = json_object_get(node, "applied_revision");
		char what[64] = "a bundle";
		if (json_is_integer(held))
			snprintf(what, sizeof(what), "revision %lld", (long long)json_integer_value(held));
		printf(
		    "warning: node %s enforces %s (%.12s), which this controller does not have: no policy is "
		    "applied here yet\n",
		    ESCAPED(verb_str(json_object_get(node, "node"), "?")), what,
		    ESCAPED(verb_str(json_object_get(node, "applied_hash"), "?")));
	}
	json_array_foreach (json_object_get(reply, "conflicts"), i, e) {
		json_t *eps = json_object_get(e, "endpoints");
		printf("warning: %s is claimed by %s and %s: %s\n",
		       ESCAPED(verb_str(json_object_get(e, "address"), "?")),
		       ESCAPED(verb_str(json_array_get(eps, 0), "?")),
		       ESCAPED(verb_str(json_array_get(eps, 1), "?")), INVENTORY_CONFLICT_EFFECT);
	}
	json_array_foreach (json_object_get(reply, "nodes"), i, node) {
		json_array_foreach (json_object_get(node, "errors"), k, e) {
			printf("%s: ", ESCAPED(verb_str(json_object_get(node, "node"), "?")));
			verb_put_escaped(stdout, verb_str(e, "?"), "\n");
		}
	}
}

int cmd_status(struct cli *cli, int argc, char **argv)
{
	struct verb_opts o;
	int ret = verb_parse_opts(argc, argv, &o, "jw", 0, 0);
	if (ret)
		return ret;
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	char lagging[4096];
	for (;;) {
		if (o.wait_s >= 0) { /* no single call past the deadline (100 ms at least) */
			clock_gettime(CLOCK_MONOTONIC, &now);
			long spent =
			    (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
			cli->call_timeout_ms =
			    (int)(o.wait_s * 1000L - spent > 100 ? o.wait_s * 1000L - spent : 100);
		}
		json_t *reply = verb_call(cli, json_pack("{s:s}", "cmd", "status"), &ret);
		if (!reply && (o.wait_s < 0 || cli->call_denied))
			return ret;
		if (reply)
			status_lagging(reply, lagging, sizeof(lagging));
		clock_gettime(CLOCK_MONOTONIC, &now);
		double waited =
		    (double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9;
		bool done = reply && !lagging[0];
		if (o.wait_s < 0 || done || waited >= o.wait_s) {
			if (!reply)
				return ret;
			if (o.json)
				verb_print_json(reply);
			else
				status_print(reply);
			json_decref(reply);
			if (o.wait_s >= 0 && !done) {
				fprintf(stderr, "bulkhead: not in sync after %d s: %s\n", o.wait_s, lagging);
				return EXIT_FAIL;
			}
			return EXIT_OK;
		}
		json_decref(reply);
		usleep(100 * 1000);
	}
}

static void join_strings(json_t *arr, char *buf, size_t n)
{
	buf[0] = '\0';
	size_t i;
	json_t *e;
	json_array_foreach (arr, i, e) {
		size_t len = strlen(buf);
		snprintf(buf + len, n - len, "%s%s", i ? "," : "", verb_str(e, "?"));
	}
}

static void endpoints_text(json_t *reply, const void *arg)
{
	struct table *t = table_new(5);
	table_add(t, "NODE", "NAME", "ADDRESSES", "GROUPS", "LABELS");
	size_t i;
	json_t *ep;
	json_array_foreach (json_object_get(reply, "endpoints"), i, ep) {
		char addrs[2048], groups[2048], labels[2048] = "";
		join_strings(json_object_get(ep, "addresses"), addrs, sizeof(addrs));
		join_strings(json_object_get(ep, "groups"), groups, sizeof(groups));
		const char *k;
		json_t *v;
		json_object_foreach (json_object_get(ep, "labels"), k, v) {
			size_t len = strlen(labels);
			snprintf(labels + len, sizeof(labels) - len, "%s%s=%s", len ? "," : "", k,
				 verb_str(v, "?"));
		}
		table_add(t, verb_str(json_object_get(ep, "node"), "?"),
			  verb_str(json_object_get(ep, "name"), "?"), addrs[0] ? addrs : "-",
			  groups[0] ? groups : "-", labels[0] ? labels : "-");
	}
	table_print(t);
}

int cmd_endpoints(struct cli *cli, int argc, char **argv)
{
	struct verb_opts o;
	int ret = verb_parse_opts(argc, argv, &o, "jn", 0, 0);
	if (ret)
		return ret;
	return verb_reply(cli, json_pack("{s:s,s:s?}", "cmd", "endpoints", "node", o.node), o.json,
			  endpoints_text, NULL);
}
