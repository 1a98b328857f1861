/* bulkhead, the operator's command (DESIGN §5): what main.c's verb table
 * dispatches to. One file per domain holds its verbs' handlers. */
#pragma once

#include <stdbool.h>

enum cli_exit {
	EXIT_OK = 0,
	EXIT_FAIL = 1,
	EXIT_USAGE = 2, /* usage error or invalid input, already said */
	/* A usage error that main.c says: the verb's usage from the table
	 * on stderr, exit 2. Never an exit code itself. */
	EXIT_SHOW_USAGE = -1,
};

/* What every verb is given besides its arguments. */
struct cli {
	const char *admin;   /* the controller's admin endpoint */
	int call_timeout_ms; /* > 0: how long the next call may wait (status --wait keeps to its budget) */
	bool call_denied;    /* the last call was refused at once: waiting will not help */
};

/* A verb: argv[0] is the last word of its path ("apply" of "policy
 * apply"), the rest its arguments. Returns an exit code or EXIT_SHOW_USAGE. */
typedef int cli_verb_fn(struct cli *cli, int argc, char **argv);

/* policy.c */
cli_verb_fn cmd_policy_validate, cmd_policy_compile, cmd_policy_apply, cmd_policy_history, cmd_policy_show,
    cmd_policy_rollback;
/* explain.c */
cli_verb_fn cmd_policy_explain;
/* preview.c */
cli_verb_fn cmd_policy_preview;
/* status.c */
cli_verb_fn cmd_status, cmd_endpoints;
/* flows.c */
cli_verb_fn cmd_flows;
/* nodes.c */
cli_verb_fn cmd_nodes_forget;
/* keys.c */
cli_verb_fn cmd_keygen;
