/* The verbs that talk to bulkhead-controller over its admin endpoint
 * (protocol: bulkhead/admin.h), and keygen. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zmq.h>

#include "bulkhead/admin.h"
#include "bulkhead/escape.h"
#include "bulkhead/inventory.h"
#include "bulkhead/keys.h"
#include "bulkhead/policy.h"
#include "bulkhead/utf8.h"
#include "online.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define POLICY_MAX_BYTES (64 << 20)

/* Text from the controller for the terminal: whatever an agent told it
 * is printed escaped (escape.h), as every string in these verbs' text
 * output is. malloc()ed. */
static char *text(const char *s)
{
	char *e = escape_dup(s);
	if (!e)
		abort();
	return e;
}

/* Prints s escaped, then end. */
static void put_text(FILE *out, const char *s, const char *end)
{
	char *e = text(s);
	fprintf(out, "%s%s", e, end);
	free(e);
}

/* Prints a failed reply's errors; returns its exit code. */
static int reply_failure(json_t *reply)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(reply, "errors"), i, e) if (json_is_string(e))
		put_text(stderr, json_string_value(e), "\n");
	const char *msg = json_string_value(json_object_get(reply, "error"));
	fputs("bulkhead: ", stderr);
	put_text(stderr, msg ? msg : "the controller refused the request", "\n");
	json_int_t code = json_integer_value(json_object_get(reply, "code"));
	return code == EXIT_USAGE ? EXIT_USAGE : EXIT_FAIL;
}

/* Whether an argument that goes into a request is text JSON can carry;
 * says which one it is not. */
static bool arg_is_text(const char *what, const char *s)
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

/* When > 0: how long the next call may wait for an answer (status --wait
 * keeps within its own budget). */
static int call_timeout_ms;
/* The last call was refused at once (this user may not connect): waiting
 * longer will not help. */
static bool call_denied;

/* One request, the reply on success (NULL with *ret set otherwise). */
static json_t *call(const char *endpoint, json_t *req, int *ret)
{
	struct admin_conn c = {0};
	json_t *reply = NULL;
	*ret = EXIT_FAIL;
	if (!req) { /* json_pack refused an argument: the checks above missed one */
		fprintf(stderr, "bulkhead: the request could not be encoded as JSON\n");
		*ret = EXIT_USAGE;
		return NULL;
	}
	int r = admin_conn_open(&c, endpoint);
	if (r == 0 && (call_timeout_ms <= 0 || call_timeout_ms >= c.timeout_ms ||
		       admin_conn_set_timeout(&c, call_timeout_ms) == 0))
		reply = admin_conn_call(&c, req);
	else
		json_decref(req);
	call_denied = r == -EACCES;
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

/* JSON for scripts, and safe on a terminal: jansson escapes C0 controls
 * and, with ENSURE_ASCII, every non-ASCII character (C1 controls, bidi
 * overrides) as \uXXXX. */
#define JSON_OUT_FLAGS JSON_ENSURE_ASCII

static void print_json(json_t *reply)
{
	json_object_del(reply, "ok");
	json_dumpf(reply, stdout, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_OUT_FLAGS);
	putchar('\n');
}

/* A node name given as arg (e.g. "--node "): the one node name syntax
 * (inventory.h); false after saying so. NULL is fine (none given). */
static bool node_arg_valid(const char *arg, const char *node)
{
	if (!node || inventory_node_name_valid(node))
		return true;
	fprintf(stderr, "bulkhead: %s\"", arg);
	put_text(stderr, node, "");
	fprintf(stderr, "\" is not a node name: %s\n", INVENTORY_NODE_NAME_RULE);
	return false;
}

/* ---- output helpers ---- */

static const char *str_or(json_t *v, const char *dflt)
{
	return json_is_string(v) ? json_string_value(v) : dflt;
}

static void format_time(json_int_t unix_seconds, char *buf, size_t n)
{
	time_t t = (time_t)unix_seconds;
	struct tm tm;
	if (!localtime_r(&t, &tm) || !strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, n, "?");
}

/* A table: rows of cells, printed with columns as wide as their widest;
 * every cell escaped. */
struct table {
	char **cells;
	size_t cols, n;
};

static void table_add(struct table *t, ...)
{
	va_list ap;
	va_start(ap, t);
	t->cells = realloc(t->cells, (t->n + t->cols) * sizeof(*t->cells));
	if (!t->cells)
		abort();
	for (size_t i = 0; i < t->cols; i++) {
		const char *s = va_arg(ap, const char *);
		t->cells[t->n++] = text(s ? s : "-");
	}
	va_end(ap);
}

static void table_print(struct table *t)
{
	size_t w[16] = {0};
	for (size_t i = 0; i < t->n; i++)
		if (strlen(t->cells[i]) > w[i % t->cols])
			w[i % t->cols] = strlen(t->cells[i]);
	for (size_t i = 0; i < t->n; i++) {
		if (i % t->cols == t->cols - 1)
			printf("%s\n", t->cells[i]);
		else
			printf("%-*s  ", (int)w[i % t->cols], t->cells[i]);
	}
	for (size_t i = 0; i < t->n; i++)
		free(t->cells[i]);
	free(t->cells);
}

/* ---- options common to the verbs ---- */

struct verb_opts {
	bool json;
	const char *comment, *node;
	int wait_s; /* -1: no --wait */
	bool force;
	int argc;   /* positional arguments left */
	char **argv;
};

static int parse_verb(int argc, char **argv, struct verb_opts *o, const char *allowed, const char *usage)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},	    {"comment", required_argument, NULL, 'c'},
		{"node", required_argument, NULL, 'n'},	    {"wait", optional_argument, NULL, 'w'},
		{"force", no_argument, NULL, 'f'},	    {NULL, 0, NULL, 0},
	};
	*o = (struct verb_opts){.wait_s = -1};
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == '?' || !strchr(allowed, c)) {
			fprintf(stderr, "bulkhead: unknown option \"%s\"\nusage: %s\n", argv[optind - 1], usage);
			return EXIT_USAGE;
		}
		switch (c) {
		case 'j': o->json = true; break;
		case 'c': o->comment = optarg; break;
		case 'n': o->node = optarg; break;
		case 'f': o->force = true; break;
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
	if (!arg_is_text("--comment", o->comment) || !arg_is_text("--node", o->node))
		return EXIT_USAGE;
	o->argc = argc - optind;
	o->argv = argv + optind;
	return EXIT_OK;
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

/* ---- policy ---- */

static int policy_apply(const char *admin, int argc, char **argv)
{
	static const char usage[] = "bulkhead policy apply FILE [--comment TEXT] [--json]";
	struct verb_opts o;
	int ret = parse_verb(argc, argv, &o, "jc", usage);
	if (ret)
		return ret;
	if (o.argc != 1) {
		fprintf(stderr, "usage: %s\n", usage);
		return EXIT_USAGE;
	}
	const char *file = o.argv[0];
	if (!arg_is_text("policy file name", file))
		return EXIT_USAGE;
	FILE *f = fopen(file, "r");
	if (!f) {
		fprintf(stderr, "%s: %s\n", file, strerror(errno));
		return EXIT_USAGE;
	}
	char *text = malloc(POLICY_MAX_BYTES + 1);
	size_t len = text ? fread(text, 1, POLICY_MAX_BYTES + 1, f) : 0;
	fclose(f);
	if (!text || len > POLICY_MAX_BYTES) {
		fprintf(stderr, "%s: larger than %d bytes\n", file, POLICY_MAX_BYTES);
		free(text);
		return EXIT_USAGE;
	}
	text[len] = '\0';
	/* Validate here first: every error, and no round trip for a typo. */
	struct diag d;
	diag_init(&d, file);
	struct policy_doc *doc = policy_parse_string(text, len, &d);
	if (!doc) {
		diag_print(&d, stderr);
		fprintf(stderr, "bulkhead: %s: invalid policy (%zu error%s); nothing applied\n", file, d.n,
			d.n == 1 ? "" : "s");
		diag_release(&d);
		free(text);
		return EXIT_USAGE;
	}
	policy_doc_free(doc);
	diag_release(&d);
	json_t *reply = call(admin,
			     json_pack("{s:s,s:s,s:s,s:s?}", "cmd", "policy.apply", "document", text, "file", file,
				       "comment", o.comment),
			     &ret);
	free(text);
	if (!reply)
		return ret;
	if (o.json)
		print_json(reply);
	else
		printf("revision %lld%s\n", (long long)json_integer_value(json_object_get(reply, "revision")),
		       json_is_true(json_object_get(reply, "unchanged")) ? " (unchanged)" : "");
	json_decref(reply);
	return EXIT_OK;
}

static int policy_history(const char *admin, int argc, char **argv)
{
	static const char usage[] = "bulkhead policy history [--json]";
	struct verb_opts o;
	int ret = parse_verb(argc, argv, &o, "j", usage);
	if (ret)
		return ret;
	if (o.argc) {
		fprintf(stderr, "usage: %s\n", usage);
		return EXIT_USAGE;
	}
	json_t *reply = call(admin, json_pack("{s:s}", "cmd", "policy.history"), &ret);
	if (!reply)
		return ret;
	if (o.json) {
		print_json(reply);
	} else {
		struct table t = {.cols = 3};
		table_add(&t, "REVISION", "TIME", "COMMENT");
		size_t i;
		json_t *r;
		json_array_foreach(json_object_get(reply, "revisions"), i, r)
		{
			char rev[32], when[64];
			snprintf(rev, sizeof(rev), "%s%lld", json_is_true(json_object_get(r, "current")) ? "*" : " ",
				 (long long)json_integer_value(json_object_get(r, "revision")));
			format_time(json_integer_value(json_object_get(r, "time")), when, sizeof(when));
			table_add(&t, rev, when, str_or(json_object_get(r, "comment"), ""));
		}
		table_print(&t);
	}
	json_decref(reply);
	return EXIT_OK;
}

static int policy_show(const char *admin, int argc, char **argv)
{
	static const char usage[] = "bulkhead policy show [REV] [--json]";
	struct verb_opts o;
	int ret = parse_verb(argc, argv, &o, "j", usage);
	if (ret)
		return ret;
	json_int_t rev = 0;
	if (o.argc > 1 || (o.argc == 1 && !parse_revision(o.argv[0], &rev))) {
		fprintf(stderr, "usage: %s\n", usage);
		return EXIT_USAGE;
	}
	json_t *req = json_pack("{s:s}", "cmd", "policy.show");
	if (rev)
		json_object_set_new(req, "revision", json_integer(rev));
	json_t *reply = call(admin, req, &ret);
	if (!reply)
		return ret;
	if (o.json)
		print_json(reply);
	else
		fputs(str_or(json_object_get(reply, "document"), ""), stdout);
	json_decref(reply);
	return EXIT_OK;
}

static int policy_rollback(const char *admin, int argc, char **argv)
{
	static const char usage[] = "bulkhead policy rollback REV [--json]";
	struct verb_opts o;
	int ret = parse_verb(argc, argv, &o, "j", usage);
	if (ret)
		return ret;
	json_int_t rev;
	if (o.argc != 1 || !parse_revision(o.argv[0], &rev)) {
		fprintf(stderr, "usage: %s\n", usage);
		return EXIT_USAGE;
	}
	json_t *reply = call(admin, json_pack("{s:s,s:I}", "cmd", "policy.rollback", "revision", rev), &ret);
	if (!reply)
		return ret;
	if (o.json)
		print_json(reply);
	else
		printf("revision %lld (rollback to %lld)\n",
		       (long long)json_integer_value(json_object_get(reply, "revision")), (long long)rev);
	json_decref(reply);
	return EXIT_OK;
}

/* ---- status ---- */

/* Nodes connected but not up to date, comma-separated (empty: converged). */
static void status_lagging(json_t *reply, char *buf, size_t n)
{
	buf[0] = '\0';
	size_t i;
	json_t *node;
	json_array_foreach(json_object_get(reply, "nodes"), i, node)
	{
		if (!json_is_true(json_object_get(node, "connected")) || json_is_true(json_object_get(node, "up_to_date")))
			continue;
		size_t len = strlen(buf);
		snprintf(buf + len, n - len, "%s%s", len ? ", " : "", ESCAPED(str_or(json_object_get(node, "node"), "?")));
	}
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
	struct table t = {.cols = 7};
	table_add(&t, "NODE", "STATE", "HEARTBEAT", "REVISION", "IN-SYNC", "ENDPOINTS", "ERRORS");
	size_t i, k;
	json_t *node, *e;
	json_array_foreach(json_object_get(reply, "nodes"), i, node)
	{
		char hb[32] = "-", applied[32] = "-", eps[32], errs[32];
		json_t *last = json_object_get(node, "last_heartbeat");
		if (json_is_integer(last))
			snprintf(hb, sizeof(hb), "%.1fs ago", (double)(now - json_integer_value(last)) / 1000.0);
		if (json_is_integer(json_object_get(node, "applied_revision")))
			snprintf(applied, sizeof(applied), "%lld",
				 (long long)json_integer_value(json_object_get(node, "applied_revision")));
		snprintf(eps, sizeof(eps), "%lld", (long long)json_integer_value(json_object_get(node, "endpoints")));
		snprintf(errs, sizeof(errs), "%zu", json_array_size(json_object_get(node, "errors")));
		/* No policy: nothing to be in sync with ("-"), unless the node
		 * enforces a bundle from before (said below). */
		bool up = json_is_true(json_object_get(node, "up_to_date"));
		table_add(&t, str_or(json_object_get(node, "node"), "?"),
			  json_is_true(json_object_get(node, "connected")) ? "up" : "down", hb, applied,
			  up ? (policy ? "yes" : "-") : "no", eps, errs);
	}
	table_print(&t);
	json_array_foreach(json_object_get(reply, "nodes"), i, node)
	{
		if (policy || json_is_true(json_object_get(node, "up_to_date")))
			continue;
		json_t *held = json_object_get(node, "applied_revision");
		char what[64] = "a bundle";
		if (json_is_integer(held))
			snprintf(what, sizeof(what), "revision %lld", (long long)json_integer_value(held));
		printf("warning: node %s enforces %s (%.12s), which this controller does not have: no policy is "
		       "applied here yet\n",
		       ESCAPED(str_or(json_object_get(node, "node"), "?")), what,
		       ESCAPED(str_or(json_object_get(node, "applied_hash"), "?")));
	}
	json_array_foreach(json_object_get(reply, "conflicts"), i, e)
	{
		json_t *eps = json_object_get(e, "endpoints");
		printf("warning: %s is claimed by %s and %s: %s\n", ESCAPED(str_or(json_object_get(e, "address"), "?")),
		       ESCAPED(str_or(json_array_get(eps, 0), "?")), ESCAPED(str_or(json_array_get(eps, 1), "?")),
		       INVENTORY_CONFLICT_EFFECT);
	}
	json_array_foreach(json_object_get(reply, "nodes"), i, node)
	{
		json_array_foreach(json_object_get(node, "errors"), k, e)
		{
			printf("%s: ", ESCAPED(str_or(json_object_get(node, "node"), "?")));
			put_text(stdout, str_or(e, "?"), "\n");
		}
	}
}

static int status(const char *admin, int argc, char **argv)
{
	static const char usage[] = "bulkhead status [--wait[=SECONDS]] [--json]";
	struct verb_opts o;
	int ret = parse_verb(argc, argv, &o, "jw", usage);
	if (ret)
		return ret;
	if (o.argc) {
		fprintf(stderr, "usage: %s\n", usage);
		return EXIT_USAGE;
	}
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	char lagging[4096];
	for (;;) {
		if (o.wait_s >= 0) { /* no single call past the deadline (100 ms at least) */
			clock_gettime(CLOCK_MONOTONIC, &now);
			long spent = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
			call_timeout_ms = (int)(o.wait_s * 1000L - spent > 100 ? o.wait_s * 1000L - spent : 100);
		}
		json_t *reply = call(admin, json_pack("{s:s}", "cmd", "status"), &ret);
		if (!reply && (o.wait_s < 0 || call_denied))
			return ret;
		if (reply)
			status_lagging(reply, lagging, sizeof(lagging));
		clock_gettime(CLOCK_MONOTONIC, &now);
		double waited = (double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9;
		bool done = reply && !lagging[0];
		if (o.wait_s < 0 || done || waited >= o.wait_s) {
			if (!reply)
				return ret;
			if (o.json)
				print_json(reply);
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

/* ---- endpoints ---- */

static void join_strings(json_t *arr, char *buf, size_t n)
{
	buf[0] = '\0';
	size_t i;
	json_t *e;
	json_array_foreach(arr, i, e)
	{
		size_t len = strlen(buf);
		snprintf(buf + len, n - len, "%s%s", i ? "," : "", str_or(e, "?"));
	}
}

static int endpoints(const char *admin, int argc, char **argv)
{
	static const char usage[] = "bulkhead endpoints [--node NODE] [--json]";
	struct verb_opts o;
	int ret = parse_verb(argc, argv, &o, "jn", usage);
	if (ret)
		return ret;
	if (!node_arg_valid("--node ", o.node))
		return EXIT_USAGE;
	if (o.argc) {
		fprintf(stderr, "usage: %s\n", usage);
		return EXIT_USAGE;
	}
	json_t *reply = call(admin, json_pack("{s:s,s:s?}", "cmd", "endpoints", "node", o.node), &ret);
	if (!reply)
		return ret;
	if (o.json) {
		print_json(reply);
	} else {
		struct table t = {.cols = 5};
		table_add(&t, "NODE", "NAME", "ADDRESSES", "GROUPS", "LABELS");
		size_t i;
		json_t *ep;
		json_array_foreach(json_object_get(reply, "endpoints"), i, ep)
		{
			char addrs[2048], groups[2048], labels[2048] = "";
			join_strings(json_object_get(ep, "addresses"), addrs, sizeof(addrs));
			join_strings(json_object_get(ep, "groups"), groups, sizeof(groups));
			const char *k;
			json_t *v;
			json_object_foreach(json_object_get(ep, "labels"), k, v)
			{
				size_t len = strlen(labels);
				snprintf(labels + len, sizeof(labels) - len, "%s%s=%s", len ? "," : "", k, str_or(v, "?"));
			}
			table_add(&t, str_or(json_object_get(ep, "node"), "?"), str_or(json_object_get(ep, "name"), "?"),
				  addrs[0] ? addrs : "-", groups[0] ? groups : "-", labels[0] ? labels : "-");
		}
		table_print(&t);
	}
	json_decref(reply);
	return EXIT_OK;
}

/* ---- flows ---- */

/* "n1/web-1 (web,frontend)", "198.51.100.7 [partners]" or the address. */
static void flow_end(json_t *row, const char *side, char *buf, size_t n)
{
	char key[32];
	snprintf(key, sizeof(key), "%s_endpoint", side);
	const char *ep = json_string_value(json_object_get(row, key));
	snprintf(key, sizeof(key), "%s_groups", side);
	const char *groups = json_string_value(json_object_get(row, key));
	const char *addr = str_or(json_object_get(row, side), "?");
	bool has_groups = groups && *groups;
	if (ep)
		snprintf(buf, n, "%s%s%s%s", ep, has_groups ? " (" : "", has_groups ? groups : "", has_groups ? ")" : "");
	else
		snprintf(buf, n, "%s%s%s%s", addr, has_groups ? " [" : "", has_groups ? groups : "", has_groups ? "]" : "");
}

static void flow_proto(json_t *row, char *buf, size_t n)
{
	const char *proto = str_or(json_object_get(row, "proto"), "?");
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
	bool audit = vocab_find(report_verdict_words, str_or(json_object_get(row, "verdict"), "")) == VERDICT_AUDIT;
	table_add(t, when, str_or(json_object_get(row, "node"), "?"), src, dst, proto,
		  audit ? "AUDIT (passed)" : "deny", str_or(json_object_get(row, "rule"), "?"), count);
}

/* Losses in the reply: a warning on stderr for each; true when any. */
static bool flows_print_lost(json_t *reply)
{
	bool any = false;
	size_t i;
	json_t *l;
	json_array_foreach(json_object_get(reply, "lost"), i, l)
	{
		json_int_t gap = json_integer_value(json_object_get(l, "gap")),
			   enobufs = json_integer_value(json_object_get(l, "enobufs")),
			   spool = json_integer_value(json_object_get(l, "spool"));
		if (!gap && !enobufs && !spool)
			continue;
		any = true;
		fprintf(stderr,
			"warning: node %s%s%s: %lld logged packet(s) not counted above (the kernel could not "
			"deliver them; %lld receive-buffer overrun(s)), %lld dropped from a full spool\n",
			ESCAPED(str_or(json_object_get(l, "node"), "?")),
			json_is_string(json_object_get(l, "endpoint")) ? ", endpoint " : "",
			json_is_string(json_object_get(l, "endpoint")) ? ESCAPED(json_string_value(json_object_get(l, "endpoint"))) : "",
			(long long)gap, (long long)enobufs, (long long)spool);
	}
	/* What the controller did not store, by reason (store.h). */
	json_array_foreach(json_object_get(reply, "dropped"), i, l)
	{
		const char *reason = str_or(json_object_get(l, "reason"), "?");
		long long batches = json_integer_value(json_object_get(l, "batches")),
			  records = json_integer_value(json_object_get(l, "records")),
			  packets = json_integer_value(json_object_get(l, "packets"));
		const char *node = ESCAPED(str_or(json_object_get(l, "node"), "?"));
		any = true;
		if (strcmp(reason, "rate") == 0)
			fprintf(stderr, "warning: node %s: %lld flow record(s) (%lld packets) over its rate limit not stored "
					"(the controller's --flow-rate)\n", node, records, packets);
		else if (strcmp(reason, "quota") == 0)
			fprintf(stderr, "warning: node %s: %lld flow record(s) (%lld packets) over its quota not stored "
					"(the controller's --flow-quota, --flow-retention)\n", node, records, packets);
		else if (strcmp(reason, "rejected") == 0)
			fprintf(stderr, "warning: node %s: %lld flow batch(es) rejected as malformed, not counted above "
					"(the controller's log says why; the agent keeps them in its flows.quarantine)\n",
				node, batches);
		else if (strcmp(reason, "expired") == 0)
			fprintf(stderr, "warning: node %s: %lld flow record(s) (%lld packets) older than the retention not "
					"stored (is the node's clock behind?)\n", node, records, packets);
		else if (strcmp(reason, "future") == 0)
			fprintf(stderr, "warning: node %s: %lld flow record(s) dated in the future, shown at the "
					"controller's time (is the node's clock ahead?)\n", node, records);
		else if (strcmp(reason, "foreign") == 0)
			fprintf(stderr, "warning: node %s: %lld flow record(s) (%lld packets) of endpoints the node did "
					"not report not stored\n", node, records, packets);
		else
			fprintf(stderr, "warning: node %s: %lld flow record(s) (%lld packets) not stored (%s)\n", node,
				records, packets, ESCAPED(reason));
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
	json_array_foreach(json_object_get(reply, "lost"), i, l)
		n += json_integer_value(json_object_get(l, "gap")) + json_integer_value(json_object_get(l, "spool"));
	json_array_foreach(json_object_get(reply, "dropped"), i, l)
	{
		if (strcmp(str_or(json_object_get(l, "reason"), ""), "future") != 0)
			n += json_integer_value(json_object_get(l, "packets"));
	}
	return n;
}

static int flows(const char *admin, int argc, char **argv)
{
	static const char usage[] = "bulkhead flows [--since DURATION] [--node N] [--group G] [--verdict deny|audit]\n"
				    "                      [--limit N] [--follow | --rules [--verdict allow]] [--json]";
	static const struct option longopts[] = {
		{"since", required_argument, NULL, 's'},  {"node", required_argument, NULL, 'n'},
		{"group", required_argument, NULL, 'g'},  {"verdict", required_argument, NULL, 'v'},
		{"limit", required_argument, NULL, 'l'},  {"follow", no_argument, NULL, 'f'},
		{"rules", no_argument, NULL, 'r'},	  {"json", no_argument, NULL, 'j'},
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
			if (duration_parse(optarg, &since) < 0) {
				fprintf(stderr, "bulkhead: --since: a duration like 30s, 10m, 2h or 1d, not \"%s\"\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'n':
			if (!node_arg_valid("--node ", optarg))
				return EXIT_USAGE;
			node = optarg;
			break;
		case 'g': group = optarg; break;
		case 'v':
			if (vocab_find(report_verdict_words, optarg) < 0) {
				fprintf(stderr, "bulkhead: --verdict: deny, audit (or allow, with --rules), not \"%s\"\n",
					optarg);
				return EXIT_USAGE;
			}
			verdict = optarg;
			break;
		case 'l':
			limit = strtol(optarg, &end, 10);
			if (*end || end == optarg || limit < 0) {
				fprintf(stderr, "bulkhead: --limit: a number >= 0 (0: no limit), not \"%s\"\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'f': follow = true; break;
		case 'r': rules = true; break;
		case 'j': as_json = true; break;
		default:
			fprintf(stderr, "bulkhead: unknown option \"%s\"\nusage: %s\n", argv[optind - 1], usage);
			return EXIT_USAGE;
		}
	}
	if (!arg_is_text("--node", node) || !arg_is_text("--group", group))
		return EXIT_USAGE;
	if (optind != argc || (follow && rules)) {
		fprintf(stderr, "usage: %s\n", usage);
		return EXIT_USAGE;
	}
	if (vocab_find(report_verdict_words, verdict) == VERDICT_ACCEPT && !rules) {
		fprintf(stderr, "bulkhead: --verdict allow needs --rules: allowed packets are counted per rule, "
				"not reported per flow\n");
		return EXIT_USAGE;
	}
	int ret;
	json_t *req = json_pack("{s:s,s:s,s:s?,s:s?,s:s?,s:I}", "cmd", "flows", "mode", rules ? "rules" : "report",
				"node", node, "group", group, "verdict", verdict, "limit", (json_int_t)limit);
	if (since >= 0)
		json_object_set_new(req, "since_seconds", json_integer(since));
	json_t *reply = call(admin, json_deep_copy(req), &ret);
	if (!reply) {
		json_decref(req);
		return ret;
	}
	json_int_t now = json_integer_value(json_object_get(reply, "time"));
	if (as_json) {
		print_json(reply);
	} else if (rules) {
		/* HITS: the rule's kernel counters (new connections and other
		 * packets that reached it); REPORTED: what the denied-flow
		 * reports gave it, from PAIRS distinct source/destination pairs. */
		struct table t = {.cols = 8};
		table_add(&t, "POLICY", "RULE", "VERDICT", "HITS", "BYTES", "REPORTED", "PAIRS", "LAST");
		size_t i;
		json_t *row;
		json_array_foreach(json_object_get(reply, "rules"), i, row)
		{
			char hits[32], bytes[32], count[32], pairs[32], when[32];
			const char *v = str_or(json_object_get(row, "verdict"), "");
			int vv = vocab_find(report_verdict_words, v);
			bool allow = vv == VERDICT_ACCEPT, audit = vv == VERDICT_AUDIT;
			snprintf(hits, sizeof(hits), "%lld", (long long)json_integer_value(json_object_get(row, "hits")));
			snprintf(bytes, sizeof(bytes), "%lld", (long long)json_integer_value(json_object_get(row, "bytes")));
			if (allow) { /* allowed packets are never reported per flow */
				strcpy(count, "-");
				strcpy(pairs, "-");
			} else {
				snprintf(count, sizeof(count), "%lld",
					 (long long)json_integer_value(json_object_get(row, "count")));
				snprintf(pairs, sizeof(pairs), "%lld",
					 (long long)json_integer_value(json_object_get(row, "pairs")));
			}
			format_ms(json_integer_value(json_object_get(row, "last")), now, when, sizeof(when));
			table_add(&t, str_or(json_object_get(row, "policy"), "-"), str_or(json_object_get(row, "rule"), "?"),
				  allow ? "allow" : audit ? "AUDIT (passed)" : "deny", hits, bytes, count, pairs, when);
		}
		table_print(&t);
		flows_print_lost(reply);
	} else {
		struct table t = {.cols = 8};
		table_add(&t, "LAST SEEN", "NODE", "SOURCE", "DESTINATION", "PROTO", "VERDICT", "RULE", "COUNT");
		size_t i;
		json_t *row;
		json_array_foreach(json_object_get(reply, "flows"), i, row) flows_table_add(&t, row, now);
		table_print(&t);
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
		reply = call(admin, json_deep_copy(req), &ret);
		if (!reply)
			break;
		json_t *rows = json_object_get(reply, "flows");
		size_t i;
		json_t *row;
		if (as_json) {
			json_array_foreach(rows, i, row)
			{
				char *line = json_dumps(row, JSON_COMPACT | JSON_OUT_FLAGS);
				printf("%s\n", line);
				free(line);
			}
		} else if (json_array_size(rows)) {
			struct table t = {.cols = 8};
			json_array_foreach(rows, i, row) flows_table_add(&t, row, json_integer_value(json_object_get(reply, "time")));
			table_print(&t);
		}
		json_array_foreach(rows, i, row) if (json_integer_value(json_object_get(row, "id")) > after) after =
			json_integer_value(json_object_get(row, "id"));
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

/* ---- nodes ---- */

static int nodes_forget(const char *admin, int argc, char **argv)
{
	static const char usage[] = "bulkhead nodes forget NODE [--force] [--json]";
	struct verb_opts o;
	int ret = parse_verb(argc, argv, &o, "jf", usage);
	if (ret)
		return ret;
	if (o.argc != 1) {
		fprintf(stderr, "usage: %s\n", usage);
		return EXIT_USAGE;
	}
	if (!node_arg_valid("", o.argv[0]))
		return EXIT_USAGE;
	json_t *reply = call(admin,
			     json_pack("{s:s,s:s,s:b}", "cmd", "nodes.forget", "node", o.argv[0], "force", o.force),
			     &ret);
	if (!reply)
		return ret;
	if (o.json)
		print_json(reply);
	else
		printf("node %s forgotten%s\n", o.argv[0],
		       json_is_true(json_object_get(reply, "was_connected"))
			       ? " (it was connected: if its agent still runs, it says HELLO again and is back)"
			       : "");
	json_decref(reply);
	return EXIT_OK;
}

/* ---- keygen ---- */

static int keygen(int argc, char **argv)
{
	static const char usage[] = "bulkhead keygen DIR [--force]";
	struct verb_opts o;
	int ret = parse_verb(argc, argv, &o, "f", usage);
	if (ret)
		return ret;
	if (o.argc != 1) {
		fprintf(stderr, "usage: %s\n", usage);
		return EXIT_USAGE;
	}
	char pub[KEY_Z85_LEN + 1], *err = NULL;
	if (keys_write_pair(o.argv[0], o.force, pub, &err) < 0) {
		fprintf(stderr, "bulkhead: keygen: %s\n", err ? err : "failed");
		free(err);
		return EXIT_FAIL;
	}
	printf("public key %s\n  %s/" KEY_PUBLIC_FILE "\n  %s/" KEY_SECRET_FILE " (keep it on this machine)\n", pub,
	       o.argv[0], o.argv[0]);
	return EXIT_OK;
}

int online_main(const char *admin, int argc, char **argv)
{
	const char *verb = argv[0];
	if (strcmp(verb, "keygen") == 0)
		return keygen(argc, argv);
	if (strcmp(verb, "status") == 0)
		return status(admin, argc, argv);
	if (strcmp(verb, "endpoints") == 0)
		return endpoints(admin, argc, argv);
	if (strcmp(verb, "flows") == 0)
		return flows(admin, argc, argv);
	if (strcmp(verb, "nodes") == 0 && argc >= 2 && strcmp(argv[1], "forget") == 0)
		return nodes_forget(admin, argc - 1, argv + 1);
	if (strcmp(verb, "policy") == 0 && argc >= 2) {
		const char *sub = argv[1];
		if (strcmp(sub, "apply") == 0)
			return policy_apply(admin, argc - 1, argv + 1);
		if (strcmp(sub, "history") == 0)
			return policy_history(admin, argc - 1, argv + 1);
		if (strcmp(sub, "show") == 0)
			return policy_show(admin, argc - 1, argv + 1);
		if (strcmp(sub, "rollback") == 0)
			return policy_rollback(admin, argc - 1, argv + 1);
	}
	return -1;
}
