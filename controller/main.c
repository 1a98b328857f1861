/* bulkhead-controller: holds the policy, learns endpoints from the agents,
 * compiles each node's bundle and sends it (DESIGN §4). Set-up only:
 * options, objects, the loop (lib/loop.c) they join. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <zmq.h>

#include "bulkhead/admin.h"
#include "bulkhead/escape.h"
#include "bulkhead/fileio.h"
#include "bulkhead/httpd.h"
#include "bulkhead/inventory.h"
#include "bulkhead/keys.h"
#include "bulkhead/log.h"
#include "bulkhead/loop.h"
#include "bulkhead/privs.h"
#include "bulkhead/proto.h"
#include "bulkhead/worker.h"
#include "admin.h"
#include "compiler.h"
#include "node.h"
#include "sessions.h"
#include "store.h"
#include "telemetry.h"
#include "web.h"

#define PROG		      "bulkhead-controller"
#define MAX_NODES_DEFAULT     1000
#define FLOW_QUERY_MS_DEFAULT 8000

static void usage(FILE *out)
{
	fputs(
	    "usage: " PROG " --state-dir DIR [--listen ENDPOINT] [--admin ENDPOINT] [--policy FILE]\n"
	    "                           (--keys DIR --agent-keys DIR | --insecure) [--flow-retention D]\n"
	    "                           [--flow-rate N] [--flow-quota N] [--flow-query-ms N]\n"
	    "                           [--max-nodes N] [--heartbeat-ms N] [--user NAME] [--verbose]\n"
	    "                           [--http ADDR:PORT [--http-token FILE]]\n"
	    "\n"
	    "  --state-dir DIR     SQLite state (" STORE_FILE "): revisions, endpoints, flows;\n"
	    "                      a restart resumes from the newest revision\n"
	    "  --listen ENDPOINT   where agents connect (default tcp://*:7700)\n"
	    "  --admin ENDPOINT    the CLI's endpoint (default " ADMIN_DEFAULT_ENDPOINT ", root-only;\n"
	    "                      refused in a directory another user controls)\n"
	    "  --policy FILE       apply FILE as a new revision at start (if it differs)\n"
	    "  --keys DIR          the controller's CURVE pair (bulkhead keygen DIR)\n"
	    "  --agent-keys DIR    allow-list: NODE.key holds the public key of NODE's agent,\n"
	    "                      NODE.labels (optional) the labels it may report (README:\n"
	    "                      Security); re-read when the directory changes\n"
	    "  --insecure          no CURVE: any agent may claim any node (local demos only)\n"
	    "  --max-nodes N       with --insecure: HELLOs under new node names are refused once N\n"
	    "                      nodes are known (default 1000; 0: no bound); `bulkhead nodes forget`\n"
	    "  --heartbeat-ms N    heartbeat interval (default 1000); silent for 3 = down\n"
	    "  --flow-retention D  denied flows and rule hits are kept this long (default 7d; 30m, 12h...;\n"
	    "                      0: forever), pruned hourly\n"
	    "  --flow-rate N       flow and hit records stored per node and second, on average over a\n"
	    "                      minute (default 2000; 0: no limit); the rest is counted as lost\n"
	    "  --flow-quota N      records kept per node (default 1000000; 0: no limit); the rest is\n"
	    "                      counted as lost until the retention makes room\n"
	    "  --flow-query-ms N   a flow query (bulkhead flows) that runs longer is stopped (it runs on a\n"
	    "                      thread of its own, beside the agents; default 8000, within the CLI's\n"
	    "                      10 s wait)\n"
	    "  --http ADDR:PORT    the blocked-flow page, its JSON API (/api/) and Prometheus /metrics,\n"
	    "                      e.g. 127.0.0.1:7780 ([::1]:7780 for IPv6); a loopback address may go\n"
	    "                      without a token, any other needs --http-token\n"
	    "  --http-token FILE   a bearer token (its first line, 16+ printable characters): every request\n"
	    "                      carries \"Authorization: Bearer TOKEN\", or a browser opens "
	    "/?token=TOKEN\n"
	    "  --user NAME         started as root: become NAME (and its groups) before anything is\n"
	    "                      opened; the state and admin directories are made for NAME when\n"
	    "                      missing. Without it, root keeps uid 0 but no capability\n",
	    out);
}

struct options {
	const char *state_dir, *listen, *admin, *policy, *keys, *agent_keys, *user, *http, *http_token;
	bool insecure, verbose;
	unsigned heartbeat_ms, max_nodes;
	long flow_retention_s;
	long flow_rate, flow_quota, flow_query_ms;
};

/* A number option: min..max, or exit 2 naming the option. */
static int count_option(const char *name, const char *arg, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(arg, &end, 10);
	if (errno || *end || end == arg || v < min || v > max) {
		fprintf(stderr, PROG ": --%s: want %ld..%ld, not \"%s\"\n", name, min, max, arg);
		return 2;
	}
	*out = v;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
	    {"state-dir", required_argument, NULL, 's'},
	    {"listen", required_argument, NULL, 'l'},
	    {"admin", required_argument, NULL, 'a'},
	    {"policy", required_argument, NULL, 'p'},
	    {"keys", required_argument, NULL, 'k'},
	    {"agent-keys", required_argument, NULL, 'K'},
	    {"insecure", no_argument, NULL, 'i'},
	    {"heartbeat-ms", required_argument, NULL, 'h'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'H'},
	    {"flow-retention", required_argument, NULL, 'r'},
	    {"flow-rate", required_argument, NULL, 'R'},
	    {"flow-quota", required_argument, NULL, 'Q'},
	    {"flow-query-ms", required_argument, NULL, 'q'},
	    {"max-nodes", required_argument, NULL, 'm'},
	    {"user", required_argument, NULL, 'u'},
	    {"http", required_argument, NULL, 'w'},
	    {"http-token", required_argument, NULL, 'W'},
	    {NULL, 0, NULL, 0},
	};
	*o = (struct options){.listen = "tcp://*:7700",
			      .heartbeat_ms = PROTO_HEARTBEAT_MS,
			      .flow_retention_s = 7 * 86400,
			      .flow_rate = 2000,
			      .flow_quota = 1000000,
			      .flow_query_ms = FLOW_QUERY_MS_DEFAULT,
			      .max_nodes = MAX_NODES_DEFAULT};
	o->admin = getenv(ADMIN_ENV) ? getenv(ADMIN_ENV) : ADMIN_DEFAULT_ENDPOINT;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			o->state_dir = optarg;
			break;
		case 'l':
			o->listen = optarg;
			break;
		case 'a':
			o->admin = optarg;
			break;
		case 'p':
			o->policy = optarg;
			break;
		case 'k':
			o->keys = optarg;
			break;
		case 'K':
			o->agent_keys = optarg;
			break;
		case 'u':
			o->user = optarg;
			break;
		case 'w':
			o->http = optarg;
			break;
		case 'W':
			o->http_token = optarg;
			break;
		case 'i':
			o->insecure = true;
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'h': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || v < 10 || v > 60000) {
				fprintf(stderr, PROG ": --heartbeat-ms: want 10..60000, not \"%s\"\n",
					optarg);
				return 2;
			}
			o->heartbeat_ms = (unsigned)v;
			break;
		}
		case 'm': {
			char *end;
			errno = 0;
			unsigned long v = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || optarg[0] == '-' || v > 1000000) {
				fprintf(stderr, PROG ": --max-nodes: want 0..1000000, not \"%s\"\n", optarg);
				return 2;
			}
			o->max_nodes = (unsigned)v;
			break;
		}
		case 'r':
			if (duration_parse(optarg, &o->flow_retention_s) < 0) {
				fprintf(stderr,
					PROG ": --flow-retention: a duration like 12h or 7d (0: forever), "
					     "not \"%s\"\n",
					optarg);
				return 2;
			}
			break;
		case 'R':
			if (count_option("flow-rate", optarg, 0, 1000000000L, &o->flow_rate))
				return 2;
			break;
		case 'Q':
			if (count_option("flow-quota", optarg, 0, 1L << 53, &o->flow_quota))
				return 2;
			break;
		case 'q':
			if (count_option("flow-query-ms", optarg, 1, 3600000L, &o->flow_query_ms))
				return 2;
			break;
		case 'H':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument \"%s\"\n", argv[optind]);
		return 2;
	}
	if (!o->state_dir) {
		fprintf(stderr, PROG ": --state-dir is required\n");
		return 2;
	}
	if (!o->insecure && (!o->keys || !o->agent_keys)) {
		fprintf(stderr,
			PROG ": agents are authenticated with CURVE: give --keys DIR and --agent-keys DIR "
			     "(or --insecure for a local demo)\n");
		return 2;
	}
	if (o->http_token && !o->http) {
		fprintf(stderr, PROG ": --http-token without --http\n");
		return 2;
	}
	if (o->http) {
		struct sockaddr_storage ss;
		socklen_t len;
		bool loopback;
		const char *why;
		if (httpd_listen_parse(o->http, &ss, &len, &loopback, &why) < 0) {
			fprintf(stderr, PROG ": --http \"%s\": %s (want ADDR:PORT, e.g. 127.0.0.1:7780)\n",
				o->http, why);
			return 2;
		}
		if (!loopback && !o->http_token) {
			fprintf(
			    stderr,
			    PROG
			    ": --http %s is not a loopback address: anyone who can reach it would read the "
			    "flows; give --http-token FILE (a bearer token), or listen on 127.0.0.1\n",
			    o->http);
			return 2;
		}
	}
	if (o->insecure && (o->keys || o->agent_keys)) {
		fprintf(stderr, PROG ": --insecure and --keys/--agent-keys exclude each other\n");
		return 2;
	}
	return 0;
}

/* The newest stored revision goes back in force. */
static void resume(struct store *s, struct compiler *c)
{
	struct store_revision r = {0};
	int e = store_get_revision(s, 0, &r);
	if (e == -ENOENT) {
		log_info("no policy yet: waiting for `bulkhead policy apply`");
		return;
	}
	if (e < 0) {
		log_error("reading the newest revision: %s", store_error(s));
		return;
	}
	struct diag d;
	char file[64];
	snprintf(file, sizeof(file), "revision %lld", (long long)r.revision);
	diag_init(&d, file);
	struct policy_doc *doc = policy_parse_string(r.document, strlen(r.document), &d);
	if (doc) {
		compiler_set_policy(c, r.revision, doc);
		log_info("resuming from policy revision %lld", (long long)r.revision);
	} else {
		log_error("stored %s no longer validates; no policy in force:", file);
		diag_print(&d, stderr);
	}
	diag_release(&d);
	store_revision_release(&r);
}

struct resume {
	struct compiler *compiler;
	json_t *forget; /* node names to drop from the store after reading it */
};

static void resume_endpoints(void *data, const char *node, const char *text)
{
	struct resume *r = data;
	struct compiler *c = r->compiler;
	/* Stored before names were checked: not a node this version knows. */
	if (!inventory_node_name_valid(node)) {
		log_warn("stored endpoints of \"%s\": not a node name; forgotten", ESCAPED(node));
		json_array_append_new(r->forget, json_stringn_nocheck(node, strlen(node)));
		return;
	}
	json_t *eps = json_loads(text, 0, NULL);
	struct diag d;
	diag_init(&d, node);
	if (!eps || compiler_set_endpoints(c, node, eps, &d) < 0)
		log_error("node %s: stored endpoints unreadable; waiting for its agent", node);
	diag_release(&d);
	json_decref(eps);
}

static int apply_policy_file(struct store *s, struct compiler *c, const char *path)
{
	char *text;
	size_t len;
	int err = fileio_read(path, POLICY_MAX_BYTES, &text, &len);
	if (err < 0)
		return log_error("--policy %s: %s", path, fileio_strerror(err)), err == -EFBIG ? 2 : 1;
	char comment[512];
	snprintf(comment, sizeof(comment), "--policy %s", path);
	json_t *r = admin_apply_policy(s, c, text, path, comment);
	free(text);
	int ret = 0;
	if (!json_is_true(json_object_get(r, "ok"))) {
		size_t i;
		json_t *e;
		json_array_foreach (json_object_get(r, "errors"), i, e)
			fprintf(stderr, "%s\n", json_string_value(e));
		log_error("%s", json_string_value(json_object_get(r, "error")));
		ret = (int)json_integer_value(json_object_get(r, "code"));
	}
	json_decref(r);
	return ret;
}

/* --http-token FILE's token: 0, or -1 having said why. */
static int read_token(const char *path, char **out)
{
	char *text;
	size_t len;
	const char *why;
	int err = fileio_read(path, 8192, &text, &len);
	if (err < 0)
		return log_error("--http-token %s: %s", path, fileio_strerror(err)), -1;
	err = httpd_token_parse(text, len, out, &why);
	explicit_bzero(text, len);
	free(text);
	if (err < 0)
		return log_error("--http-token %s: %s", path, why), -1;
	return 0;
}

/* SIGINT and SIGTERM through a signalfd: the loop ends. */
struct signals {
	int fd;
	struct loop *loop;
};

static void on_signal(void *data, uint32_t events)
{
	struct signals *sg = data;
	struct signalfd_siginfo si;
	if (read(sg->fd, &si, sizeof(si)) == sizeof(si)) {
		log_info("signal %u: exiting", si.ssi_signo);
		loop_quit(sg->loop, 0);
	}
}

int main(int argc, char **argv)
{
	struct options o;
	int ret = parse_options(argc, argv, &o);
	if (ret)
		return ret;
	log_setup(PROG, o.verbose);

	/* Before anything is opened and before ZeroMQ starts its threads:
	 * everything below runs as the user, without capabilities. */
	const struct privs_path paths[] = {
	    {"--state-dir", o.state_dir, PRIVS_OWN_DIR}, {"--admin", o.admin, PRIVS_IPC_ENDPOINT},
	    {"--keys", o.keys, PRIVS_READ_DIR},		 {"--agent-keys", o.agent_keys, PRIVS_READ_DIR},
	    {"--policy", o.policy, PRIVS_READ_FILE},	 {"--http-token", o.http_token, PRIVS_READ_FILE},
	};
	char *err = NULL;
	ret = privs_become_user(o.user, paths, BH_ARRAY_SIZE(paths), &err);
	if (ret < 0) {
		log_error("%s", err ? err : "dropping privileges failed");
		free(err);
		return 1;
	}
	if (ret > 0)
		log_warn("running as root (without capabilities): give --user NAME, or User= in the unit");
	else if (o.user)
		log_info("running as user %s, without capabilities", o.user);
	ret = 0;

	char *token = NULL;
	if (o.http_token && read_token(o.http_token, &token) < 0)
		return 1;

	char pub[KEY_Z85_LEN + 1] = "", sec[KEY_Z85_LEN + 1] = "";
	if (o.insecure) {
		log_warn("--insecure: agents are not authenticated and any agent may speak for any node");
	} else if (keys_read_pair(o.keys, pub, sec, &err) < 0) {
		log_error("%s", err);
		free(err);
		return 1;
	}

	struct store *store = store_open(o.state_dir, &err);
	if (!store) {
		log_error("state: %s", err);
		free(err);
		return 1;
	}
	struct nodes *nodes = nodes_new();
	struct compiler *compiler = compiler_new(nodes);
	resume(store, compiler);
	struct resume rs = {compiler, json_array()};
	if (store_each_inventory(store, resume_endpoints, &rs) < 0)
		log_error("reading stored endpoints: %s", store_error(store));
	size_t i;
	json_t *name;
	json_array_foreach (rs.forget, i, name)
		if (store_forget_node(store, json_string_value(name)) < 0)
			log_error("forgetting \"%s\": %s", ESCAPED(json_string_value(name)),
				  store_error(store));
	json_decref(rs.forget);
	if (o.policy && (ret = apply_policy_file(store, compiler, o.policy)) != 0) {
		compiler_free(compiler);
		nodes_free(nodes);
		store_free(store);
		return ret;
	}
	compiler_refresh(compiler);

	struct sessions_options so = {
	    .listen = o.listen,
	    .insecure = o.insecure,
	    .public_key = pub,
	    .secret_key = sec,
	    .allow_dir = o.agent_keys,
	    .heartbeat_ms = o.heartbeat_ms,
	    .flow_retention_ms = (int64_t)o.flow_retention_s * 1000,
	    .flow_rate = o.flow_rate,
	    .flow_quota = o.flow_quota,
	    .max_nodes = o.max_nodes,
	};
	/* Two threads beside the loop: one compiles, one answers slow admin
	 * requests and checkpoints the store (a flow query does not hold
	 * back a policy's bundles). */
	struct loop *loop = loop_new();
	void *zctx = zmq_ctx_new();
	struct worker *worker = loop ? worker_new(loop) : NULL;
	struct worker *compile_worker = worker ? worker_new(loop) : NULL;
	struct sessions *sessions = NULL;
	struct admin *admin = NULL;
	struct telemetry *telemetry = NULL;
	struct worker *http_worker = NULL;
	struct web *web = NULL;
	struct admin_options ao = {.endpoint = o.admin, .flow_query_ms = o.flow_query_ms, .worker = worker};
	if (!compile_worker) {
		log_error("the loop and its threads: %m");
		ret = 1;
		goto out;
	}
	compiler_use_worker(compiler, compile_worker);
	if (store_checkpoint_off_loop(store, loop, worker, &err) < 0 ||
	    !(sessions = sessions_new(loop, zctx, &so, nodes, compiler, store, &err)) ||
	    !(admin = admin_new(loop, zctx, &ao, store, compiler, sessions, &err))) {
		log_error("%s", err);
		free(err);
		ret = 1;
		goto out;
	}
	if (o.http) {
		/* The page's flow queries on a thread of their own: a page left
		 * open does not hold back `bulkhead flows`. */
		telemetry = telemetry_new(compiler, sessions);
		struct web_options wo = {.listen = o.http, .token = token, .flow_query_ms = o.flow_query_ms};
		if (!(wo.worker = http_worker = worker_new(loop))) {
			log_error("the HTTP thread: %m");
			ret = 1;
			goto out;
		}
		if (!(web = web_new(loop, &wo, store, compiler, sessions, telemetry_metrics(telemetry),
				    &err))) {
			log_error("%s", err);
			free(err);
			ret = 1;
			goto out;
		}
		log_info("the page, /api/ and /metrics on --http %s, port %u%s", o.http, web_port(web),
			 token ? " (bearer token)" : "");
	}
	log_info("listening for agents on %s%s, admin on %s", o.listen,
		 o.insecure ? " (insecure)" : " (CURVE)", o.admin);
	if (!o.insecure)
		log_info("controller public key %s", pub);

	/* signalfd: the loop sees signals as one more readable fd. */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	struct signals sg = {signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK), loop};
	struct loop_source *sig_src = sg.fd >= 0 ? loop_add_fd(loop, sg.fd, EPOLLIN, on_signal, &sg) : NULL;
	if (!sig_src) {
		log_error("signalfd: %m");
		ret = 1;
	} else if ((ret = loop_run(loop)) < 0) {
		log_error("the loop: %s", strerror(-ret));
		ret = 1;
	}
	loop_remove(loop, sig_src);
	if (sg.fd >= 0)
		close(sg.fd);
out:
	/* The workers first: their jobs use the compiler, the admin's and
	 * the store's connections. */
	worker_free(compile_worker);
	worker_free(worker);
	worker_free(http_worker);
	web_free(web);
	telemetry_free(telemetry);
	if (token)
		explicit_bzero(token, strlen(token));
	free(token);
	admin_free(admin);
	sessions_free(sessions);
	zmq_ctx_term(zctx);
	compiler_free(compiler);
	nodes_free(nodes);
	store_free(store);
	loop_free(loop);
	return ret;
}
