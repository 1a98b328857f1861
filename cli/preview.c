/* bulkhead policy preview: what a document would newly block and newly
 * allow of the flows the controller saw in a period (controller/preview.h),
 * with how much of the period allowed traffic was observed; exit 3 when
 * something would be newly blocked. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "bulkhead/common.h"
#include "bulkhead/escape.h"
#include "bulkhead/policy.h"
#include "cli.h"
#include "table.h"
#include "verb.h"

/* The exit code of a preview that would newly block something. */
#define EXIT_NEWLY_BLOCKED 3

static void end_text(json_t *f, const char *side, char *buf, size_t n)
{
	char key[32];
	snprintf(key, sizeof(key), "%s_endpoint", side);
	const char *ep = json_string_value(json_object_get(f, key));
	snprintf(key, sizeof(key), "%s_groups", side);
	const char *groups = json_string_value(json_object_get(f, key));
	bool g = groups && *groups;
	snprintf(buf, n, "%s%s%s%s", ep ? ep : verb_str(json_object_get(f, side), "?"),
		 g ? (ep ? " (" : " [") : "", g ? groups : "", g ? (ep ? ")" : "]") : "");
}

static void proto_text(json_t *f, char *buf, size_t n)
{
	const char *proto = verb_str(json_object_get(f, "proto"), "?");
	json_t *port = json_object_get(f, "port"), *type = json_object_get(f, "icmp_type");
	if (json_is_integer(port))
		snprintf(buf, n, "%s/%lld", proto, (long long)json_integer_value(port));
	else if (json_is_integer(type))
		snprintf(buf, n, "%s/%lld/%lld", proto, (long long)json_integer_value(type),
			 (long long)json_integer_value(json_object_get(f, "icmp_code")));
	else
		snprintf(buf, n, "%s", proto);
}

static void when_text(json_int_t ms, char *buf, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
}

/* One section: the flows of reply whose change is change. */
static void section(json_t *reply, const char *change, const char *title)
{
	json_int_t n = json_integer_value(json_object_get(json_object_get(reply, "counts"), change));
	printf("\n%s: %lld\n", title, (long long)n);
	if (!n)
		return;
	struct table *t = table_new(8);
	table_add(t, "LAST SEEN", "SOURCE", "DESTINATION", "PROTO", "WAS", "BY", "NOW", "BY");
	size_t i;
	json_t *f;
	json_array_foreach (json_object_get(reply, "flows"), i, f) {
		if (strcmp(verb_str(json_object_get(f, "change"), ""), change) != 0)
			continue;
		char when[32], src[512], dst[512], proto[64], was[64];
		when_text(json_integer_value(json_object_get(f, "last")), when, sizeof(when));
		end_text(f, "src", src, sizeof(src));
		end_text(f, "dst", dst, sizeof(dst));
		proto_text(f, proto, sizeof(proto));
		snprintf(was, sizeof(was), "%s x%lld", verb_str(json_object_get(f, "was"), "?"),
			 (long long)json_integer_value(json_object_get(f, "count")));
		table_add(t, when, src, dst, proto, was, verb_str(json_object_get(f, "was_rule"), "-"),
			  verb_str(json_object_get(f, "now"), "?"),
			  verb_str(json_object_get(f, "rule"), "-"));
	}
	table_print(t);
}

static void preview_text(json_t *reply, const char *file)
{
	json_int_t since = json_integer_value(json_object_get(reply, "since")),
		   until = json_integer_value(json_object_get(reply, "until")),
		   observed = json_integer_value(json_object_get(reply, "observed_ms"));
	json_t *counts = json_object_get(reply, "counts");
	char from[32];
	when_text(since, from, sizeof(from));
	printf("%s", "Preview of ");
	verb_put_escaped(stdout, file, "");
	printf(" against the flows seen since %s, judged against the current endpoints.\n", from);
	json_int_t period = until > since ? until - since : 1;
	if (observed >= period)
		printf("Observed with \"observe\": \"all\" the whole period: allowed and denied flows.\n");
	else if (observed > 0)
		printf("Observed with \"observe\": \"all\" %.0f%% of the period (%lld of %lld s): allowed "
		       "traffic "
		       "outside it is unknown, so what would be newly blocked may be more than shown.\n",
		       100.0 * (double)observed / (double)period, (long long)(observed / 1000),
		       (long long)(period / 1000));
	else
		printf(
		    "No revision with \"observe\": \"all\" was in force in the period: allowed traffic is "
		    "unknown, "
		    "so nothing can be shown as newly blocked; only denied and audited flows were judged.\n");
	/* Reports lost on the way, or not stored: flows the preview cannot see. */
	json_int_t lost = 0;
	size_t i;
	json_t *l;
	json_array_foreach (json_object_get(reply, "lost"), i, l)
		lost += json_integer_value(json_object_get(l, "gap")) +
			json_integer_value(json_object_get(l, "spool"));
	json_array_foreach (json_object_get(reply, "dropped"), i, l)
		if (strcmp(verb_str(json_object_get(l, "reason"), ""), "future") != 0)
			lost += json_integer_value(json_object_get(l, "packets"));
	if (lost)
		printf("Warning: %lld logged packet(s) of the period were lost or not stored (bulkhead flows "
		       "says "
		       "where): flows may be missing here.\n",
		       (long long)lost);
	section(reply, "newly_blocked", "Newly blocked");
	section(reply, "newly_allowed", "Newly allowed");
	printf("\nUnchanged: %lld (--json lists them)\n",
	       (long long)json_integer_value(json_object_get(counts, "unchanged")));
}

int cmd_policy_preview(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"since", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	long since = 24 * 3600;
	bool as_json = false;
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (!verb_since_arg(optarg, &since))
				return EXIT_USAGE;
			break;
		case 'j':
			as_json = true;
			break;
		default:
			fprintf(stderr, "bulkhead: unknown option \"%s\"\n", argv[optind - 1]);
			return EXIT_SHOW_USAGE;
		}
	}
	if (optind != argc - 1)
		return EXIT_SHOW_USAGE;
	const char *file = argv[optind];
	if (!verb_arg_is_text("policy file name", file))
		return EXIT_USAGE;
	size_t len;
	char *text = verb_read_valid_policy(file, &len, "");
	if (!text)
		return EXIT_USAGE;
	json_t *req = json_pack("{s:s,s:s,s:s,s:I}", "cmd", "policy.preview", "document", text, "file", file,
				"since_seconds", (json_int_t)since);
	free(text);
	int ret;
	json_t *reply = verb_call(cli, req, &ret);
	if (!reply)
		return ret;
	bool blocked =
	    json_integer_value(json_object_get(json_object_get(reply, "counts"), "newly_blocked")) > 0;
	if (as_json)
		verb_print_json(reply);
	else
		preview_text(reply, file);
	json_decref(reply);
	return blocked ? EXIT_NEWLY_BLOCKED : EXIT_OK;
}
