/* What the verbs that talk to the controller share (see verb.h). */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/common.h"
#include "bulkhead/escape.h"
#include "bulkhead/inventory.h"
#include "bulkhead/policy.h"
#include "bulkhead/utf8.h"
#include "admin.h"
#include "verb.h"

int verb_parse_opts(int argc, char **argv, struct verb_opts *o, const char *allowed, int min_args,
		    int max_args)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},	    {"comment", required_argument, NULL, 'c'},
	    {"node", required_argument, NULL, 'n'}, {"wait", optional_argument, NULL, 'w'},
	    {"force", no_argument, NULL, 'f'},	    {NULL, 0, NULL, 0},
	};
	*o = (struct verb_opts){.wait_s = -1};
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == '?' || !strchr(allowed, c)) {
			fprintf(stderr, "bulkhead: unknown option \"%s\"\n", argv[optind - 1]);
			return EXIT_SHOW_USAGE;
		}
		switch (c) {
		case 'j':
			o->json = true;
			break;
		case 'c':
			o->comment = optarg;
			break;
		case 'n':
			o->node = optarg;
			break;
		case 'f':
			o->force = true;
			break;
		case 'w': {
			char *end = NULL;
			long v = optarg ? strtol(optarg, &end, 10) : 30;
			if ((optarg && (*end || end == optarg)) || v < 0 || v > 86400) {
				fprintf(stderr, "bulkhead: --wait=SECONDS, not \"%s\"\n", optarg);
				return EXIT_USAGE;
			}
			o->wait_s = (int)v;
			break;
		}
		}
	}
	if (!verb_arg_is_text("--comment", o->comment) || !verb_arg_is_text("--node", o->node) ||
	    !verb_node_arg_valid("--node ", o->node))
		return EXIT_USAGE;
	o->argc = argc - optind;
	o->argv = argv + optind;
	return o->argc < min_args || o->argc > max_args ? EXIT_SHOW_USAGE : EXIT_OK;
}

bool verb_arg_is_text(const char *what, const char *s)
{
	if (!s || utf8_valid(s))
		return true;
	char *shown = utf8_escape(s);
	fprintf(stderr,
		"bulkhead: %s \"%s\": not valid UTF-8 (requests are JSON, which carries UTF-8 text only)\n",
		what, shown ? shown : "?");
	free(shown);
	return false;
}

bool verb_node_arg_valid(const char *arg, const char *node)
{
	if (!node || inventory_node_name_valid(node))
		return true;
	fprintf(stderr, "bulkhead: %s\"", arg);
	verb_put_escaped(stderr, node, "");
	fprintf(stderr, "\" is not a node name: %s\n", INVENTORY_NODE_NAME_RULE);
	return false;
}

/* Prints a failed reply's errors; returns its exit code. */
static int reply_failure(json_t *reply)
{
	size_t i;
	json_t *e;
	json_array_foreach (json_object_get(reply, "errors"), i, e)
		if (json_is_string(e))
			verb_put_escaped(stderr, json_string_value(e), "\n");
	const char *msg = json_string_value(json_object_get(reply, "error"));
	fputs("bulkhead: ", stderr);
	verb_put_escaped(stderr, msg ? msg : "the controller refused the request", "\n");
	json_int_t code = json_integer_value(json_object_get(reply, "code"));
	return code == EXIT_USAGE ? EXIT_USAGE : EXIT_FAIL;
}

json_t *verb_call(struct cli *cli, json_t *req, int *ret)
{
	struct admin_conn c = {0};
	json_t *reply = NULL;
	*ret = EXIT_FAIL;
	if (!req) { /* json_pack refused an argument: the checks above missed one */
		fprintf(stderr, "bulkhead: the request could not be encoded as JSON\n");
		*ret = EXIT_USAGE;
		return NULL;
	}
	int r = admin_conn_open(&c, cli->admin);
	if (r == 0 && (cli->call_timeout_ms <= 0 || cli->call_timeout_ms >= c.timeout_ms ||
		       admin_conn_set_timeout(&c, cli->call_timeout_ms) == 0))
		reply = admin_conn_call(&c, req);
	else
		json_decref(req);
	cli->call_denied = r == -EACCES;
	admin_conn_close(&c);
	if (reply && !json_is_true(json_object_get(reply, "ok"))) {
		*ret = reply_failure(reply);
		json_decref(reply);
		return NULL;
	}
	if (reply)
		*ret = EXIT_OK;
	return reply;
}

int verb_reply(struct cli *cli, json_t *req, bool json, verb_text_fn *text, const void *arg)
{
	int ret;
	json_t *reply = verb_call(cli, req, &ret);
	if (!reply)
		return ret;
	if (json)
		verb_print_json(reply);
	else
		text(reply, arg);
	json_decref(reply);
	return EXIT_OK;
}

void verb_print_json(json_t *reply)
{
	json_object_del(reply, "ok");
	json_dumpf(reply, stdout, JSON_INDENT(2) | JSON_SORT_KEYS | VERB_JSON_FLAGS);
	putchar('\n');
}

void verb_put_escaped(FILE *out, const char *s, const char *end)
{
	char *e = escape_dup(s);
	if (!e)
		abort();
	fprintf(out, "%s%s", e, end);
	free(e);
}

const char *verb_str(json_t *v, const char *dflt)
{
	return json_is_string(v) ? json_string_value(v) : dflt;
}

char *verb_read_valid_policy(const char *file, size_t *len, const char *after)
{
	char *text;
	struct diag d;
	diag_init(&d, file);
	if (policy_read_file(file, &text, len, &d) < 0) {
		diag_print(&d, stderr);
		diag_release(&d);
		return NULL;
	}
	struct policy_doc *doc = policy_parse_string(text, *len, &d);
	if (!doc) {
		diag_print(&d, stderr);
		fprintf(stderr, "bulkhead: %s: invalid policy (%zu error%s)%s\n", file, d.n,
			d.n == 1 ? "" : "s", after);
		diag_release(&d);
		free(text);
		return NULL;
	}
	policy_doc_free(doc);
	diag_release(&d);
	return text;
}

bool verb_since_arg(const char *arg, long *seconds)
{
	if (duration_parse(arg, seconds) == 0)
		return true;
	fprintf(stderr, "bulkhead: --since: a duration like 30s, 10m, 2h or 1d, not \"%s\"\n", arg);
	return false;
}
