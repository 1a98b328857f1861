/* bulkhead: the operator's command (DESIGN §5). The global options and
 * the one verb table: dispatch, every usage text and --help come from it,
 * so help cannot disagree with what runs. The verbs live by domain:
 * policy.c, explain.c, preview.c, status.c, flows.c, nodes.c, keys.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/admin.h"
#include "bulkhead/common.h"
#include "cli.h"

#define PROG "bulkhead"

struct command {
	const char *path; /* its words: "policy apply" */
	/* Its synopses (one per form) after the path; "\n" continues one
	 * on the next line, aligned under its first argument. */
	const char *forms[2];
	const char *help; /* one line; "\n" continues it, aligned */
	cli_verb_fn *run;
};

static const struct command commands[] = {
    {"policy validate",
     {"FILE"},
     "check a policy document offline; exit 0 valid, 2 invalid (errors on stderr)",
     cmd_policy_validate},
    {"policy compile",
     {"FILE --inventory INV [--inventory INV...] [--node NODE]"},
     "compile a policy against node inventories and print the bundles as JSON",
     cmd_policy_compile},
    {"policy explain",
     {"FILE --inventory INV... --from ADDR|NODE/NAME --to ADDR|NODE/NAME\n"
      "--proto tcp|udp|sctp|icmp|icmpv6 [--port N] [--type T [--code C]]\n"
      "[-6] [--json]",
      "FILE --inventory INV... --probes FILE|-"},
     "which rules decide a packet, at its source (egress) and its destination (ingress);\n"
     "--probes reads JSON lines {\"src\",\"dst\",\"proto\",\"port\"|\"type\",\"code\"} and prints\n"
     "one JSON verdict per line",
     cmd_policy_explain},
    {"policy preview",
     {"FILE [--since DURATION] [--json]"},
     "the flows the controller saw since DURATION ago (default 24h), allowed and denied,\n"
     "judged again under FILE against the current endpoints: what FILE would newly block,\n"
     "newly allow, and what stays; says how much of the period allowed traffic was\n"
     "observed (\"observe\": \"all\"); exit 3 when something would be newly blocked",
     cmd_policy_preview},
    {"policy apply",
     {"FILE [--comment TEXT] [--json]"},
     "validate, then make the document the controller's newest revision",
     cmd_policy_apply},
    {"policy history", {"[--json]"}, "the revisions, newest first (* = in force)", cmd_policy_history},
    {"policy show", {"[REV] [--json]"}, "one revision's document (default: the newest)", cmd_policy_show},
    {"policy rollback",
     {"REV [--json]"},
     "make an old revision's document the newest revision",
     cmd_policy_rollback},
    {"status",
     {"[--wait[=SECONDS]] [--json]"},
     "per known node (the allow-list's; with --insecure every node seen until\n"
     "`nodes forget`), down ones too: connected, last heartbeat, applied revision,\n"
     "in sync, errors; --wait: exit 0 once every known node is connected and has\n"
     "applied the newest revision, 1 on timeout (default 30 s), naming those down\n"
     "or behind",
     cmd_status},
    {"endpoints",
     {"[--node NODE] [--json]"},
     "every endpoint the agents reported, with addresses and groups",
     cmd_endpoints},
    {"flows",
     {"[--since DURATION] [--node N] [--group G] [--verdict deny|audit|allow]\n"
      "[--limit N] [--follow | --rules] [--json]"},
     "the blocked-flow report: denied and audited flows, newest first, with both ends\n"
     "named and the deciding rule (--verdict allow: the accepted new connections that\n"
     "a policy with \"observe\": \"all\" reports); --follow prints new ones as they\n"
     "arrive; --rules: packets per rule (default --limit 50)",
     cmd_flows},
    {"nodes forget",
     {"NODE [--force] [--json]"},
     "drop a decommissioned node: its endpoints leave every group, the other nodes'\n"
     "bundles are recompiled; a connected node only with --force",
     cmd_nodes_forget},
    {"keygen", {"DIR [--force]"}, "a CURVE key pair: DIR/public.key and DIR/secret.key (0600)", cmd_keygen},
};

/* text, its continuation lines indented by indent. */
static void put_indented(FILE *out, const char *text, int indent)
{
	for (const char *line = text, *nl;; line = nl + 1) {
		nl = strchr(line, '\n');
		if (line != text)
			fprintf(out, "%*s", indent, "");
		fprintf(out, "%.*s\n", nl ? (int)(nl - line) : (int)strlen(line), line);
		if (!nl)
			break;
	}
}

/* c's synopses, the first after lead ("usage: " or as wide in spaces). */
static void command_synopsis(const struct command *c, FILE *out, const char *lead)
{
	for (size_t i = 0; i < BH_ARRAY_SIZE(c->forms) && c->forms[i]; i++) {
		int n = fprintf(out, "%s" PROG " %s ", i ? "       " : lead, c->path);
		put_indented(out, c->forms[i], n);
	}
}

static void usage(FILE *out)
{
	int width = 0;
	fputs("usage: " PROG " [--admin ENDPOINT] VERB ...\n", out);
	for (size_t i = 0; i < BH_ARRAY_SIZE(commands); i++) {
		command_synopsis(&commands[i], out, "       ");
		if ((int)strlen(commands[i].path) > width)
			width = (int)strlen(commands[i].path);
	}
	fputc('\n', out);
	for (size_t i = 0; i < BH_ARRAY_SIZE(commands); i++) {
		fprintf(out, "%-*s  ", width, commands[i].path);
		put_indented(out, commands[i].help, width + 2);
	}
	fputs("\nThe controller's admin endpoint: --admin, else $" ADMIN_ENV ", else\n" ADMIN_DEFAULT_ENDPOINT
	      ". `" PROG " VERB --help`: that verb alone.\n",
	      out);
}

/* The command whose path's words start argv, or NULL; *words: how many. */
static const struct command *command_find(int argc, char **argv, int *words)
{
	for (size_t i = 0; i < BH_ARRAY_SIZE(commands); i++) {
		const char *p = commands[i].path;
		int n = 0;
		for (; n < argc; n++) {
			size_t len = strcspn(p, " ");
			if (strlen(argv[n]) != len || strncmp(argv[n], p, len) != 0)
				break;
			p += len;
			if (!*p) {
				*words = n + 1;
				return &commands[i];
			}
			p++;
		}
	}
	return NULL;
}

/* Whether a verb's arguments ask for its help: "--help" anywhere before a
 * "--" (also where an option would take it as its value). */
static bool wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--help") == 0)
			return true;
	return false;
}

int main(int argc, char **argv)
{
	struct cli cli = {.admin = getenv(ADMIN_ENV) ? getenv(ADMIN_ENV) : ADMIN_DEFAULT_ENDPOINT};
	if (argc >= 3 && strcmp(argv[1], "--admin") == 0) {
		cli.admin = argv[2];
		argv += 2;
		argc -= 2;
	} else if (argc >= 2 && strncmp(argv[1], "--admin=", 8) == 0) {
		cli.admin = argv[1] + 8;
		argv++;
		argc--;
	}
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	int words;
	const struct command *c = command_find(argc - 1, argv + 1, &words);
	if (!c) {
		fprintf(stderr, PROG ": unknown command \"%s%s%s\"\n", argv[1], argc >= 3 ? " " : "",
			argc >= 3 ? argv[2] : "");
		usage(stderr);
		return EXIT_USAGE;
	}
	/* The verb sees its last word as argv[0]. */
	argc -= words;
	argv += words;
	if (wants_help(argc, argv)) {
		command_synopsis(c, stdout, "usage: ");
		fputc('\n', stdout);
		put_indented(stdout, c->help, 0);
		return EXIT_OK;
	}
	int ret = c->run(&cli, argc, argv);
	if (ret == EXIT_SHOW_USAGE) {
		command_synopsis(c, stderr, "usage: ");
		ret = EXIT_USAGE;
	}
	return ret;
}
