/* bulkhead flows: the blocked-flow report (denied and audited flows with
 * both ends named; allowed ones, where observed, with --verdict allow),
 * --follow as they are stored, --rules per rule. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bulkhead/common.h"
#include "bulkhead/escape.h"
#include "cli.h"
#include "table.h"
#include "verb.h"

/* "n1/web-1 (web,frontend)", "198.51.100.7 [partners]" or the address. */
static void flow_end(json_t *row, const char *side, char *buf, size_t n)
{
	char key[32];
	snprintf(key, sizeof(key), "%s_endpoint", side);
	const char *ep = json_string_value(json_object_get(row, key));
	snprintf(key, sizeof(key), "%s_groups", side);
	const char *groups = json_string_value(json_object_get(row, key));
	const char *addr = verb_str(json_object_get(row, side), "?");
	bool has_groups = groups && *groups;
	if (ep)
		snprintf(buf, n, "%s%s%s%s", ep, has_groups ? " (" : "", has_groups ? groups : "",
			 has_groups ? ")" : "");
	else
		snprintf(buf, n, "%s%s%s%s", addr, has_groups ? " [" : "", has_groups ? groups : "",
			 has_groups ? "]" : "");
}

static void flow_proto(json_t *row, char *buf, size_t n)
{
	const char *proto = verb_str(json_object_get(row, "proto"), "?");
	json_t *port = json_object_get(row, "port"), *type = json_object_get(row, "icmp_type"),
	       *code = json_object_get(row, "icmp_code");
	if (json_is_integer(port))
		snprintf(buf, n, "%s/%lld", proto, (long long)json_integer_value(port));
	else if (json_is_integer(type))
		snprintf(buf, n, "%s/%lld/%lld", proto, (long long)json_integer_value(type),
			 (long long)json_integer_value(code));
	else
		snprintf(buf, n, "%s", proto);
}

static void format_ms(json_int_t ms, json_int_t now_ms, char *buf, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, n, now_ms - ms < 20 * 3600 * 1000 ? "%H:%M:%S" : "%Y-%m-%d %H:%M:%S", &tm);
}

static void flows_table_add(struct table *t, json_t *row, json_int_t now)
{
	char when[32], src[512], dst[512], proto[64], count[32];
	format_ms(json_integer_value(json_object_get(row, "last")), now, when, sizeof(when));
	flow_end(row, "src", src, sizeof(src));
	flow_end(row, "dst", dst, sizeof(dst));
	flow_proto(row, proto, sizeof(proto));
	snprintf(count, sizeof(count), "%lld", (long long)json_integer_value(json_object_get(row, "count")));
	/* An audit passed: it says so, in other words than a denial. */
	int v = vocab_find(report_verdict_words, verb_str(json_object_get(row, "verdict"), ""));
	table_add(t, when, verb_str(json_object_get(row, "node"), "?"), src, dst, proto,
		  v == VERDICT_AUDIT	? "AUDIT (passed)"
		  : v == VERDICT_ACCEPT ? "allow"
					: "deny",
		  verb_str(json_object_get(row, "rule"), "?"), count);
}

/* Losses in the reply: a warning on stderr for each; true when any. */
static bool flows_print_lost(json_t *reply)
{
	bool any = false;
	size_t i;
	json_t *l;
	json_array_foreach (json_object_get(reply, "lost"), i, l) {
		json_int_t gap = json_integer_value(json_object_get(l, "gap")),
			   enobufs = json_integer_value(json_object_get(l, "enobufs")),
			   spool = json_integer_value(json_object_get(l, "spool"));
		if (!gap && !enobufs && !spool)
			continue;
		any = true;
		fprintf(stderr,
			"warning: node %s%s%s: %lld logged packet(s) not counted above (the kernel could not "
			"deliver them; %lld receive-buffer overrun(s)), %lld dropped from a full spool\n",
			ESCAPED(verb_str(json_object_get(l, "node"), "?")),
			json_is_string(json_object_get(l, "endpoint")) ? ", endpoint " : "",
			json_is_string(json_object_get(l, "endpoint"))
			    ? ESCAPED(json_string_value(json_object_get(l, "endpoint")))
			    : "",
			(long long)gap, (long long)enobufs, (long long)spool);
	}
	/* What the controller did not store, by reason (store.h). */
	json_array_foreach (json_object_get(reply, "dropped"), i, l) {
		const char *reason = verb_str(json_object_get(l, "reason"), "?");
		long long batches = json_integer_value(json_object_get(l, "batches")),
			  records = json_integer_value(json_object_get(l, "records")),
			  packets = json_integer_value(json_object_get(l, "packets"));
		const char *node = ESCAPED(verb_str(json_object_get(l, "node"), "?"));
		any = true;
		if (strcmp(reason, "rate") == 0)
			fprintf(stderr,
				"warning: node %s: %lld flow record(s) (%lld packets) over its rate limit "
				"not stored "
				"(the controller's --flow-rate)\n",
				node, records, packets);
		else if (strcmp(reason, "quota") == 0)
			fprintf(
			    stderr,
			    "warning: node %s: %lld flow record(s) (%lld packets) over its quota not stored "
			    "(the controller's --flow-quota, --flow-retention)\n",
			    node, records, packets);
		else if (strcmp(reason, "rejected") == 0)
			fprintf(
			    stderr,
			    "warning: node %s: %lld flow batch(es) rejected as malformed, not counted above "
			    "(the controller's log says why; the agent keeps them in its flows.quarantine)\n",
			    node, batches);
		else if (strcmp(reason, "expired") == 0)
			fprintf(stderr,
				"warning: node %s: %lld flow record(s) (%lld packets) older than the "
				"retention not "
				"stored (is the node's clock behind?)\n",
				node, records, packets);
		else if (strcmp(reason, "future") == 0)
			fprintf(stderr,
				"warning: node %s: %lld flow record(s) dated in the future, shown at the "
				"controller's time (is the node's clock ahead?)\n",
				node, records);
		else if (strcmp(reason, "foreign") == 0)
			fprintf(
			    stderr,
			    "warning: node %s: %lld flow record(s) (%lld packets) of endpoints the node did "
			    "not report not stored\n",
			    node, records, packets);
		else
			fprintf(stderr,
				"warning: node %s: %lld flow record(s) (%lld packets) not stored (%s)\n",
				node, records, packets, ESCAPED(reason));
	}
	return any;
}

/* Packets lost in a reply's "lost" list and not stored by the controller
 * ("dropped": a record dated in the future was stored), all nodes together. */
static json_int_t flows_lost_total(json_t *reply)
{
	json_int_t n = 0;
	size_t i;
	json_t *l;
	json_array_foreach (json_object_get(reply, "lost"), i, l)
		n += json_integer_value(json_object_get(l, "gap")) +
		     json_integer_value(json_object_get(l, "spool"));
	json_array_foreach (json_object_get(reply, "dropped"), i, l) {
		if (strcmp(verb_str(json_object_get(l, "reason"), ""), "future") != 0)
			n += json_integer_value(json_object_get(l, "packets"));
	}
	return n;
}

int cmd_flows(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"since", required_argument, NULL, 's'},
	    {"node", required_argument, NULL, 'n'},
	    {"group", required_argument, NULL, 'g'},
	    {"verdict", required_argument, NULL, 'v'},
	    {"limit", required_argument, NULL, 'l'},
	    {"follow", no_argument, NULL, 'f'},
	    {"rules", no_argument, NULL, 'r'},
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	const char *node = NULL, *group = NULL, *verdict = NULL;
	long since = -1, limit = 50;
	bool follow = false, rules = false, as_json = false;
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 's':
			if (!verb_since_arg(optarg, &since))
				return EXIT_USAGE;
			break;
		case 'n':
			if (!verb_node_arg_valid("--node ", optarg))
				return EXIT_USAGE;
			node = optarg;
			break;
		case 'g':
			group = optarg;
			break;
		case 'v':
			if (vocab_find(report_verdict_words, optarg) < 0) {
				fprintf(stderr, "bulkhead: --verdict: deny, audit or allow, not \"%s\"\n",
					optarg);
				return EXIT_USAGE;
			}
			verdict = optarg;
			break;
		case 'l':
			limit = strtol(optarg, &end, 10);
			if (*end || end == optarg || limit < 0) {
				fprintf(stderr,
					"bulkhead: --limit: a number >= 0 (0: no limit), not \"%s\"\n",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'f':
			follow = true;
			break;
		case 'r':
			rules = true;
			break;
		case 'j':
			as_json = true;
			break;
		default:
			fprintf(stderr, "bulkhead: unknown option \"%s\"\n", argv[optind - 1]);
			return EXIT_SHOW_USAGE;
		}
	}
	if (!verb_arg_is_text("--node", node) || !verb_arg_is_text("--group", group))
		return EXIT_USAGE;
	if (optind != argc || (follow && rules))
		return EXIT_SHOW_USAGE;
	int ret;
	json_t *req =
	    json_pack("{s:s,s:s,s:s?,s:s?,s:s?,s:I}", "cmd", "flows", "mode", rules ? "rules" : "report",
		      "node", node, "group", group, "verdict", verdict, "limit", (json_int_t)limit);
	if (since >= 0)
		json_object_set_new(req, "since_seconds", json_integer(since));
	json_t *reply = verb_call(cli, json_deep_copy(req), &ret);
	if (!reply) {
		json_decref(req);
		return ret;
	}
	json_int_t now = json_integer_value(json_object_get(reply, "time"));
	if (as_json) {
		verb_print_json(reply);
	} else if (rules) {
		/* HITS: the rule's kernel counters (new connections and other
		 * packets that reached it); REPORTED: what the denied-flow
		 * reports gave it, from PAIRS distinct source/destination pairs. */
		struct table *t = table_new(8);
		table_add(t, "POLICY", "RULE", "VERDICT", "HITS", "BYTES", "REPORTED", "PAIRS", "LAST");
		size_t i;
		json_t *row;
		json_array_foreach (json_object_get(reply, "rules"), i, row) {
			char hits[32], bytes[32], count[32], pairs[32], when[32];
			const char *v = verb_str(json_object_get(row, "verdict"), "");
			int vv = vocab_find(report_verdict_words, v);
			bool allow = vv == VERDICT_ACCEPT, audit = vv == VERDICT_AUDIT;
			snprintf(hits, sizeof(hits), "%lld",
				 (long long)json_integer_value(json_object_get(row, "hits")));
			snprintf(bytes, sizeof(bytes), "%lld",
				 (long long)json_integer_value(json_object_get(row, "bytes")));
			/* Allowed flows are reported only where observed (observe all). */
			if (allow && json_integer_value(json_object_get(row, "count")) == 0) {
				strcpy(count, "-");
				strcpy(pairs, "-");
			} else {
				snprintf(count, sizeof(count), "%lld",
					 (long long)json_integer_value(json_object_get(row, "count")));
				snprintf(pairs, sizeof(pairs), "%lld",
					 (long long)json_integer_value(json_object_get(row, "pairs")));
			}
			format_ms(json_integer_value(json_object_get(row, "last")), now, when, sizeof(when));
			table_add(t, verb_str(json_object_get(row, "policy"), "-"),
				  verb_str(json_object_get(row, "rule"), "?"),
				  allow	  ? "allow"
				  : audit ? "AUDIT (passed)"
					  : "deny",
				  hits, bytes, count, pairs, when);
		}
		table_print(t);
		flows_print_lost(reply);
	} else {
		struct table *t = table_new(8);
		table_add(t, "LAST SEEN", "NODE", "SOURCE", "DESTINATION", "PROTO", "VERDICT", "RULE",
			  "COUNT");
		size_t i;
		json_t *row;
		json_array_foreach (json_object_get(reply, "flows"), i, row)
			flows_table_add(t, row, now);
		table_print(t);
		flows_print_lost(reply);
	}
	json_int_t after = json_integer_value(json_object_get(reply, "last_id"));
	json_int_t lost_before = flows_lost_total(reply);
	json_decref(reply);
	/* --follow: each new window's flows as they are stored, oldest first. */
	while (follow) {
		fflush(stdout);
		sleep(1);
		json_object_set_new(req, "mode", json_string("follow"));
		json_object_set_new(req, "after_id", json_integer(after));
		json_object_set_new(req, "limit", json_integer(0));
		reply = verb_call(cli, json_deep_copy(req), &ret);
		if (!reply)
			break;
		json_t *rows = json_object_get(reply, "flows");
		size_t i;
		json_t *row;
		if (as_json) {
			json_array_foreach (rows, i, row) {
				char *line = json_dumps(row, JSON_COMPACT | VERB_JSON_FLAGS);
				printf("%s\n", line);
				free(line);
			}
		} else if (json_array_size(rows)) {
			struct table *t = table_new(8);
			json_array_foreach (rows, i, row)
				flows_table_add(t, row, json_integer_value(json_object_get(reply, "time")));
			table_print(t);
		}
		json_array_foreach (rows, i, row)
			if (json_integer_value(json_object_get(row, "id")) > after)
				after = json_integer_value(json_object_get(row, "id"));
		json_int_t lost_now = flows_lost_total(reply);
		if (lost_now > lost_before)
			fprintf(stderr, "warning: %lld more logged packet(s) lost (not counted above)\n",
				(long long)(lost_now - lost_before));
		lost_before = lost_now;
		json_decref(reply);
	}
	json_decref(req);
	return ret;
}
