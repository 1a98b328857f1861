/* bulkhead policy validate, compile (offline), apply, history, show and
 * rollback (the controller's revisions). explain is in explain.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "bulkhead/log.h"
#include "bulkhead/policy.h"
#include "cli.h"
#include "offline.h"
#include "table.h"
#include "verb.h"

/* ---- offline ---- */

int cmd_policy_validate(struct cli *cli, int argc, char **argv)
{
	if (argc != 2)
		return EXIT_SHOW_USAGE;
	const char *file = argv[1];
	struct diag d;
	diag_init(&d, file);
	struct policy_doc *doc = policy_parse_file(file, &d);
	if (!doc) {
		diag_print(&d, stderr);
		diag_release(&d);
		return EXIT_USAGE;
	}
	size_t n_rules = 0;
	for (size_t i = 0; i < doc->n_policies; i++)
		n_rules += doc->policies[i].rules[DIR_INGRESS].n + doc->policies[i].rules[DIR_EGRESS].n;
	printf("%s: valid: %zu groups, %zu policies, %zu rules\n", file, doc->n_groups, doc->n_policies,
	       n_rules);
	policy_doc_free(doc);
	diag_release(&d);
	return EXIT_OK;
}

int cmd_policy_compile(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"inventory", required_argument, NULL, 'i'},
	    {"node", required_argument, NULL, 'n'},
	    {0},
	};
	const char **inventories = xcalloc((size_t)argc, sizeof(*inventories));
	size_t n_inventories = 0;
	const char *node = NULL;
	struct offline o = {0};
	int c, ret = EXIT_SHOW_USAGE;

	optind = 0;
	while ((c = getopt_long(argc, argv, "i:n:", opts, NULL)) != -1) {
		if (c == 'i')
			inventories[n_inventories++] = optarg;
		else if (c == 'n')
			node = optarg;
		else
			goto out;
	}
	if (optind != argc - 1 || n_inventories == 0)
		goto out;
	if ((ret = offline_load(&o, argv[optind], inventories, n_inventories)) != EXIT_OK)
		goto out;
	if (node && !offline_bundle(&o, node)) {
		fprintf(stderr, "bulkhead: node \"%s\" is in none of the inventories\n", node);
		ret = EXIT_USAGE;
		goto out;
	}

	json_t *out = node ? NULL : json_array();
	for (const char **n = o.nodes; *n; n++) {
		if (node && strcmp(node, *n) != 0)
			continue;
		json_t *j = bundle_to_json(offline_bundle(&o, *n));
		if (!j)
			abort();
		if (node)
			out = j;
		else
			json_array_append_new(out, j);
	}
	if (!node)
		out = json_pack("{s:o}", "bundles", out);
	ret = out && json_dumpf(out, stdout, JSON_INDENT(2)) == 0 ? EXIT_OK : EXIT_FAIL;
	putchar('\n');
	json_decref(out);
out:
	offline_release(&o);
	free(inventories);
	return ret;
}

/* ---- the controller's revisions ---- */

static void format_time(json_int_t unix_seconds, char *buf, size_t n)
{
	time_t t = (time_t)unix_seconds;
	struct tm tm;
	if (!localtime_r(&t, &tm) || !strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, n, "?");
}

static bool parse_revision(const char *s, json_int_t *out)
{
	char *end;
	long long v = strtoll(s, &end, 10);
	if (!*s || *end || v < 1) {
		fprintf(stderr, "bulkhead: \"%s\" is not a revision number\n", s);
		return false;
	}
	*out = v;
	return true;
}

static void apply_text(json_t *reply, const void *arg)
{
	printf("revision %lld%s\n", (long long)json_integer_value(json_object_get(reply, "revision")),
	       json_is_true(json_object_get(reply, "unchanged")) ? " (unchanged)" : "");
}

int cmd_policy_apply(struct cli *cli, int argc, char **argv)
{
	struct verb_opts o;
	int ret = verb_parse_opts(argc, argv, &o, "jc", 1, 1);
	if (ret)
		return ret;
	const char *file = o.argv[0];
	if (!verb_arg_is_text("policy file name", file))
		return EXIT_USAGE;
	size_t len;
	char *text = verb_read_valid_policy(file, &len, "; nothing applied");
	if (!text)
		return EXIT_USAGE;
	json_t *req = json_pack("{s:s,s:s,s:s,s:s?}", "cmd", "policy.apply", "document", text, "file", file,
				"comment", o.comment);
	free(text);
	return verb_reply(cli, req, o.json, apply_text, NULL);
}

static void history_text(json_t *reply, const void *arg)
{
	struct table *t = table_new(3);
	table_add(t, "REVISION", "TIME", "COMMENT");
	size_t i;
	json_t *r;
	json_array_foreach (json_object_get(reply, "revisions"), i, r) {
		char rev[32], when[64];
		snprintf(rev, sizeof(rev), "%s%lld", json_is_true(json_object_get(r, "current")) ? "*" : " ",
			 (long long)json_integer_value(json_object_get(r, "revision")));
		format_time(json_integer_value(json_object_get(r, "time")), when, sizeof(when));
		table_add(t, rev, when, verb_str(json_object_get(r, "comment"), ""));
	}
	table_print(t);
}

int cmd_policy_history(struct cli *cli, int argc, char **argv)
{
	struct verb_opts o;
	int ret = verb_parse_opts(argc, argv, &o, "j", 0, 0);
	if (ret)
		return ret;
	return verb_reply(cli, json_pack("{s:s}", "cmd", "policy.history"), o.json, history_text, NULL);
}

static void show_text(json_t *reply, const void *arg)
{
	fputs(verb_str(json_object_get(reply, "document"), ""), stdout);
}

int cmd_policy_show(struct cli *cli, int argc, char **argv)
{
	struct verb_opts o;
	json_int_t rev = 0;
	int ret = verb_parse_opts(argc, argv, &o, "j", 0, 1);
	if (ret)
		return ret;
	if (o.argc == 1 && !parse_revision(o.argv[0], &rev))
		return EXIT_SHOW_USAGE;
	json_t *req = json_pack("{s:s}", "cmd", "policy.show");
	if (rev)
		json_object_set_new(req, "revision", json_integer(rev));
	return verb_reply(cli, req, o.json, show_text, NULL);
}

static void rollback_text(json_t *reply, const void *arg)
{
	printf("revision %lld (rollback to %lld)\n",
	       (long long)json_integer_value(json_object_get(reply, "revision")),
	       (long long)*(const json_int_t *)arg);
}

int cmd_policy_rollback(struct cli *cli, int argc, char **argv)
{
	struct verb_opts o;
	json_int_t rev;
	int ret = verb_parse_opts(argc, argv, &o, "j", 1, 1);
	if (ret)
		return ret;
	if (!parse_revision(o.argv[0], &rev))
		return EXIT_SHOW_USAGE;
	return verb_reply(cli, json_pack("{s:s,s:I}", "cmd", "policy.rollback", "revision", rev), o.json,
			  rollback_text, &rev);
}
