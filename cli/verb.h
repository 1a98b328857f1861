/* verb: what the verbs that talk to the controller share: their common
 * options, the checks of what goes into a request, one request and its
 * failure, and printing a reply. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "cli.h"

/* JSON for scripts, and safe on a terminal: jansson escapes C0 controls
 * and, with ENSURE_ASCII, every non-ASCII character (C1 controls, bidi
 * overrides) as \uXXXX. */
#define VERB_JSON_FLAGS JSON_ENSURE_ASCII

/* The options common to the verbs. */
struct verb_opts {
	bool json;
	const char *comment, *node;
	int wait_s; /* -1: no --wait */
	bool force;
	int argc; /* positional arguments left */
	char **argv;
};

/* Parses argv (argv[0] the verb) into o, allowing only the options whose
 * letters are in allowed (j --json, c --comment, n --node NODE-NAME, w
 * --wait, f --force) and from min_args to max_args positional arguments.
 * EXIT_OK, EXIT_USAGE (said), or EXIT_SHOW_USAGE. */
int verb_parse_opts(int argc, char **argv, struct verb_opts *o, const char *allowed, int min_args,
		    int max_args);

/* Whether an argument that goes into a request is text JSON can carry;
 * says which one (what) it is not. NULL is fine (none given). */
bool verb_arg_is_text(const char *what, const char *s);
/* The value of --since (a duration such as 30s, 10m, 2h or 1d) in
 * *seconds; false after saying what was expected. */
bool verb_since_arg(const char *arg, long *seconds);
/* The policy document in file, read and checked here before it is sent
 * (every error, and no round trip for a typo): its text (malloc'd, *len
 * bytes), or NULL after printing the errors and "invalid policy" with
 * after (e.g. "; nothing applied"). */
char *verb_read_valid_policy(const char *file, size_t *len, const char *after);
/* A node name given as arg (e.g. "--node "): the one node name syntax
 * (inventory.h); false after saying so. NULL is fine (none given). */
bool verb_node_arg_valid(const char *arg, const char *node);

/* One request (stolen; NULL when json_pack refused an argument) on a new
 * connection to cli->admin: the reply when it says ok. Otherwise NULL
 * after printing why, with *ret the exit code: 2 when the controller
 * calls the input invalid, else 1. Sets cli->call_denied. */
json_t *verb_call(struct cli *cli, json_t *req, int *ret);

/* How a verb shows a reply as text; arg is the verb's own. */
typedef void verb_text_fn(json_t *reply, const void *arg);
/* One request (as verb_call), its reply shown as JSON when json, else by
 * text. Returns the exit code. */
int verb_reply(struct cli *cli, json_t *req, bool json, verb_text_fn *text, const void *arg);

/* A reply for scripts (VERB_JSON_FLAGS), without its "ok". */
void verb_print_json(json_t *reply);
/* s, escaped (escape.h), then end. */
void verb_put_escaped(FILE *out, const char *s, const char *end);
/* v's string, or dflt when v is none. */
const char *verb_str(json_t *v, const char *dflt);
