/* bulkhead-agent: enforces its node's bundle in every local container's
 * network namespace (DESIGN §3). Set-up only: options, objects, the loop. */
#include <errno.h>
#include <getopt.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bulkhead/bundle.h"
#include "bulkhead/escape.h"
#include "bulkhead/fileio.h"
#include "bulkhead/httpd.h"
#include "bulkhead/inventory.h"
#include "agent.h"
#include "bulkhead/log.h"
#include "bulkhead/loop.h"
#include "bundle-file.h"
#include "dataplane.h"
#include "hook.h"
#include "bulkhead/privs.h"
#include "engine-http.h"
#include "nft.h"
#include "session.h"
#include "session-privsep.h"
#include "source-engine.h"
#include "source-hook.h"
#include "source.h"
#include "state.h"
#include "telemetry.h"

#define PROG "bulkhead-agent"

#define STRINGIFY_(x) #x
#define STRINGIFY(x)  STRINGIFY_(x)

static void usage(FILE *out)
{
	fputs(
	    "usage: " PROG " --node NAME (--inventory FILE | --engine ENGINE[:SOCKET])... --state-dir DIR\n"
	    "                      [--controller ENDPOINT (--keys DIR --controller-key FILE | --insecure)]\n"
	    "                      [--bundle FILE] [--dataplane nft|nft-maps|nft-linear|null] [--nflog-group "
	    "N] [--flow-window-ms N]\n"
	    "                      [--counters-ms N] [--recheck-ms N] [--select LABEL[=VALUE]] "
	    "[--cap-ptrace]\n"
	    "                      [--hook-socket PATH] [--metrics ADDR:PORT [--metrics-token FILE]]\n"
	    "                      [--once] [--verbose] [--session-user NAME | --no-privsep]\n"
	    "       " PROG " --print-ruleset --bundle FILE --node NAME [--inventory FILE] [--dataplane "
	    "nft-maps|nft-linear]\n"
	    "       " PROG " hook [--socket PATH] [--timeout-ms N]   the OCI hook (" PROG " hook --help)\n"
	    "\n"
	    "  --node NAME         this node; bundles for other nodes are refused\n"
	    "  --inventory FILE    local endpoints and their namespaces (re-read when it changes)\n"
	    "  --engine docker[:SOCKET]  every running container of Docker (" ENGINE_DOCKER_SOCKET ")\n"
	    "  --engine podman[:SOCKET]  or of podman's API service (" ENGINE_PODMAN_SOCKET ")\n"
	    "                      is an endpoint: its name, its labels and " ENGINE_LABEL ", its\n"
	    "                      namespace (SandboxKey; else /proc/PID/ns/net, which needs --cap-ptrace);\n"
	    "                      not a container of --network host (the node's own namespace) nor one\n"
	    "                      that joins another's (--network container:X). Named ports from labels\n"
	    "                      " ENGINE_PORT_LABEL_PREFIX
	    "NAME=tcp/8080. A container seen starting holds\n"
	    "                      the quarantine table until its own comes. With --inventory too, a name\n"
	    "                      both report stays with the first (the inventory's at start)\n"
	    "  --select LABEL[=VALUE]  only the containers with that label (and value) are endpoints\n"
	    "  --state-dir DIR     cached last bundle (applied first at start) and status.json\n"
	    "  --controller EP     the controller, e.g. tcp://10.0.0.1:7700 (bundles, status, endpoints)\n"
	    "  --keys DIR          this agent's CURVE pair (bulkhead keygen DIR)\n"
	    "  --controller-key F  the controller's public key, pinned\n"
	    "  --insecure          no CURVE (local demos only)\n"
	    "  --heartbeat-ms N    heartbeat interval (default 1000); silent for 3 = down\n"
	    "  --bundle FILE       a compiled bundle (bulkhead policy compile), re-read when it changes;\n"
	    "                      with --controller too, the newest input wins\n"
	    "  --dataplane nft     one table inet " NFT_TABLE_NAME " per endpoint namespace (default)\n"
	    "                      (each direction a list of rules while it is short, verdict-map\n"
	    "                      lookups past " STRINGIFY(
		NFT_LINEAR_WALK_MAX) " nft rules: the cost of a new connection does not\n"
				     "                      grow with the rules)\n"
				     "  --dataplane nft-maps    the same, always verdict-map lookups\n"
				     "  --dataplane nft-linear  the same, always a list of rules walked in "
				     "order\n"
				     "  --dataplane null    build every batch but touch no kernel state\n"
				     "  --nflog-group N     NFLOG group for drops and audits (default 100)\n"
				     "  --flow-window-ms N  denied flows are aggregated this long before a "
				     "report (default 1000)\n"
				     "  --counters-ms N     rule hit counters are read this often (default "
				     "5000)\n"
				     "  --recheck-ms N      namespace paths are re-checked and failed "
				     "endpoints retried this\n"
				     "                      often (default 500); a mount or unmount is seen "
				     "at once\n"
				     "  --cap-ptrace        keep CAP_SYS_PTRACE too: opening "
				     "/proc/PID/ns/net of a process that\n"
				     "                      has capabilities the agent has not, or another "
				     "user's, needs it\n"
				     "                      (bind-mounted paths such as /run/netns/NAME do "
				     "not)\n"
				     "  --session-user NAME the controller session (ZeroMQ, the wire's JSON, "
				     "the flow spool) runs\n"
				     "                      in a child process as this user, with no "
				     "capability (default nobody)\n"
				     "  --no-privsep        the controller session runs inside the agent "
				     "(debugging, scale tests)\n"
				     "  --hook-socket PATH  listen for the OCI hook there (" PROG
				     " hook, installed in podman's\n"
				     "                      hooks.d): a container waits to start until its "
				     "table is in place,\n"
				     "                      and starts quarantined when it cannot be in "
				     "time; root only\n"
				     "  --metrics ADDR:PORT Prometheus metrics on http://ADDR:PORT/metrics "
				     "(e.g. 127.0.0.1:9701); a\n"
				     "                      loopback address may go without a token, any "
				     "other needs --metrics-token\n"
				     "  --metrics-token F   a bearer token (F's first line, 16+ printable "
				     "characters) that every\n"
				     "                      scrape carries: \"Authorization: Bearer TOKEN\"\n"
				     "  --once              bring every endpoint up to date, then exit (1 if "
				     "any failed)\n"
				     "  --print-ruleset     print each endpoint's ruleset as nft text and "
				     "exit\n"
				     "\n"
				     "On exit the rules stay in place (fail-static); at start the cached "
				     "bundle is\n"
				     "applied before the controller is asked.\n",
	    out);
}

struct options {
	struct agent_options agent;
	struct session_options session;
	struct link_options link;
	const char *inventory_path;
	const char *hook_socket;
	struct source_engine_options engines[2];
	size_t n_engines;
	const char *select;
	const char *keys, *controller_key;
	const char *metrics, *metrics_token;
	const char *session_user;
	bool null_dataplane, print_ruleset, once, verbose, cap_ptrace, no_privsep;
	enum nft_form form;
};

/* A decimal option value in lo..hi; false after saying what was expected. */
static bool parse_range(const char *option, const char *s, unsigned long lo, unsigned long hi,
			unsigned long *out)
{
	char *end;
	errno = 0;
	*out = strtoul(s, &end, 10);
	if (errno || *end || end == s || *out < lo || *out > hi) {
		log_error("--%s: expected %lu..%lu, not \"%s\"", option, lo, hi, s);
		return false;
	}
	return true;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	unsigned long v;
	static const struct option longopts[] = {
	    {"bundle", required_argument, NULL, 'b'},
	    {"inventory", required_argument, NULL, 'i'},
	    {"node", required_argument, NULL, 'n'},
	    {"state-dir", required_argument, NULL, 's'},
	    {"dataplane", required_argument, NULL, 'd'},
	    {"nflog-group", required_argument, NULL, 'g'},
	    {"print-ruleset", no_argument, NULL, 'p'},
	    {"once", no_argument, NULL, 'o'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {"controller", required_argument, NULL, 'C'},
	    {"keys", required_argument, NULL, 'k'},
	    {"controller-key", required_argument, NULL, 'K'},
	    {"insecure", no_argument, NULL, 'I'},
	    {"heartbeat-ms", required_argument, NULL, 'H'},
	    {"flow-window-ms", required_argument, NULL, 'W'},
	    {"counters-ms", required_argument, NULL, 'c'},
	    {"recheck-ms", required_argument, NULL, 'R'},
	    {"cap-ptrace", no_argument, NULL, 'P'},
	    {"engine", required_argument, NULL, 'E'},
	    {"select", required_argument, NULL, 'S'},
	    {"hook-socket", required_argument, NULL, 'X'},
	    {"metrics", required_argument, NULL, 'M'},
	    {"metrics-token", required_argument, NULL, 'T'},
	    {"session-user", required_argument, NULL, 'U'},
	    {"no-privsep", no_argument, NULL, 'N'},
	    {NULL, 0, NULL, 0},
	};
	int c;
	*o = (struct options){.agent.nflog_group = NFT_NFLOG_GROUP_DEFAULT,
			      .session.flow_window_ms = 1000,
			      .agent.counters_ms = 5000,
			      .agent.recheck_ms = 500,
			      .link.heartbeat_ms = PROTO_HEARTBEAT_MS,
			      .session_user = "nobody",
			      .form = NFT_FORM_AUTO};
	while ((c = getopt_long(argc, argv, "hv", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			o->agent.bundle_path = optarg;
			break;
		case 'i':
			o->inventory_path = optarg;
			break;
		case 'n':
			o->agent.node = optarg;
			break;
		case 's':
			o->agent.state_dir = optarg;
			break;
		case 'd':
			if (strcmp(optarg, "nft") == 0 || strcmp(optarg, "nft-linear") == 0 ||
			    strcmp(optarg, "nft-maps") == 0) {
				o->null_dataplane = false;
				o->form = !optarg[3]			    ? NFT_FORM_AUTO
					  : strcmp(optarg, "nft-maps") == 0 ? NFT_FORM_MAPS
									    : NFT_FORM_LINEAR;
			} else if (strcmp(optarg, "null") == 0) {
				o->null_dataplane = true;
			} else {
				log_error(
				    "--dataplane: expected nft, nft-maps, nft-linear or null, not \"%s\"",
				    optarg);
				return -EINVAL;
			}
			break;
		case 'g':
			if (!parse_range("nflog-group", optarg, 0, UINT16_MAX, &v))
				return -EINVAL;
			o->agent.nflog_group = (uint16_t)v;
			break;
		case 'p':
			o->print_ruleset = true;
			break;
		case 'C':
			o->link.endpoint = optarg;
			break;
		case 'k':
			o->keys = optarg;
			break;
		case 'K':
			o->controller_key = optarg;
			break;
		case 'I':
			o->link.insecure = true;
			break;
		case 'H':
			if (!parse_range("heartbeat-ms", optarg, 10, 60000, &v))
				return -EINVAL;
			o->link.heartbeat_ms = (unsigned)v;
			break;
		case 'W':
			if (!parse_range("flow-window-ms", optarg, 10, 600000, &v))
				return -EINVAL;
			o->session.flow_window_ms = (unsigned)v;
			break;
		case 'c':
			if (!parse_range("counters-ms", optarg, 10, 3600000, &v))
				return -EINVAL;
			o->agent.counters_ms = (unsigned)v;
			break;
		case 'R':
			if (!parse_range("recheck-ms", optarg, 10, 3600000, &v))
				return -EINVAL;
			o->agent.recheck_ms = (unsigned)v;
			break;
		case 'o':
			o->once = true;
			break;
		case 'P':
			o->cap_ptrace = true;
			break;
		case 'U':
			o->session_user = optarg;
			break;
		case 'N':
			o->no_privsep = true;
			break;
		case 'X':
			if (optarg[0] != '/') {
				log_error("--hook-socket: expected an absolute path, not \"%s\"",
					  ESCAPED(optarg));
				return -EINVAL;
			}
			o->hook_socket = optarg;
			break;
		case 'E': {
			const char *why;
			if (o->n_engines == BH_ARRAY_SIZE(o->engines)) {
				log_error("--engine: at most %zu", BH_ARRAY_SIZE(o->engines));
				return -EINVAL;
			}
			if (source_engine_parse(optarg, &o->engines[o->n_engines], &why) < 0) {
				log_error("--engine \"%s\": %s", ESCAPED(optarg), why);
				return -EINVAL;
			}
			for (size_t i = 0; i < o->n_engines; i++) {
				if (o->engines[i].kind == o->engines[o->n_engines].kind) {
					log_error("--engine %s given twice", ESCAPED(optarg));
					return -EINVAL;
				}
			}
			o->n_engines++;
			break;
		}
		case 'S':
			o->select = optarg;
			break;
		case 'M':
			o->metrics = optarg;
			break;
		case 'T':
			o->metrics_token = optarg;
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		log_error("unexpected argument \"%s\"", argv[optind]);
		return -EINVAL;
	}
	if (!o->agent.node) {
		log_error("--node is required");
		return -EINVAL;
	}
	if (!inventory_node_name_valid(o->agent.node)) {
		log_error("--node \"%s\": not a node name: %s", ESCAPED(o->agent.node),
			  INVENTORY_NODE_NAME_RULE);
		return -EINVAL;
	}
	if (o->print_ruleset) {
		if (!o->agent.bundle_path) {
			log_error("--print-ruleset needs --bundle");
			return -EINVAL;
		}
		return 0;
	}
	if (!o->inventory_path && !o->n_engines) {
		log_error("--inventory or --engine is required (where the endpoints come from)");
		return -EINVAL;
	}
	if (o->select) {
		struct engine_select sel;
		const char *why;
		if (!o->n_engines) {
			log_error("--select goes with --engine");
			return -EINVAL;
		}
		if (engine_select_parse(o->select, &sel, &why) < 0) {
			log_error("--select \"%s\": %s", ESCAPED(o->select), why);
			return -EINVAL;
		}
		for (size_t i = 0; i < o->n_engines; i++)
			o->engines[i].select = sel;
	}
	if (!o->once && !o->agent.state_dir) {
		log_error("--state-dir is required (the cached bundle and status live there)");
		return -EINVAL;
	}
	if (o->metrics_token && !o->metrics) {
		log_error("--metrics-token goes with --metrics");
		return -EINVAL;
	}
	if (o->metrics) {
		struct sockaddr_storage ss;
		socklen_t len;
		bool loopback;
		const char *why;
		if (o->once) {
			log_error("--metrics does not go with --once");
			return -EINVAL;
		}
		if (httpd_listen_parse(o->metrics, &ss, &len, &loopback, &why) < 0) {
			log_error("--metrics \"%s\": %s (want ADDR:PORT, e.g. 127.0.0.1:9701)",
				  ESCAPED(o->metrics), why);
			return -EINVAL;
		}
		if (!loopback && !o->metrics_token) {
			log_error("--metrics %s is not a loopback address: give --metrics-token FILE (a "
				  "bearer token), "
				  "or listen on 127.0.0.1",
				  o->metrics);
			return -EINVAL;
		}
	}
	if ((o->keys || o->controller_key || o->link.insecure) && !o->link.endpoint) {
		log_error("--keys, --controller-key and --insecure go with --controller");
		return -EINVAL;
	}
	if (o->link.endpoint && o->once) {
		log_error("--once applies the cached or given bundle only; it does not go with --controller");
		return -EINVAL;
	}
	if (o->link.endpoint && !o->link.insecure) {
		if (!o->keys || !o->controller_key) {
			log_error("the controller link is CURVE-authenticated: give --keys DIR and "
				  "--controller-key FILE "
				  "(or --insecure for a local demo)");
			return -EINVAL;
		}
		char *err = NULL;
		if (keys_read_pair(o->keys, o->link.public_key, o->link.secret_key, &err) < 0 ||
		    keys_read(o->controller_key, o->link.server_key, &err) < 0) {
			log_error("%s", err ? err : "reading keys failed");
			free(err);
			return -EINVAL;
		}
	} else if (o->link.endpoint && (o->keys || o->controller_key)) {
		log_error("--insecure and --keys/--controller-key exclude each other");
		return -EINVAL;
	}
	o->session.node = o->agent.node;
	o->session.state_dir = o->agent.state_dir;
	o->session.link = &o->link;
	return 0;
}

/* --print-ruleset: the nft text of what would be programmed. */
static int print_ruleset(const struct options *o)
{
	char *text;
	size_t len;
	int r = state_read_path(o->agent.bundle_path, BUNDLE_FILE_MAX_BYTES, &text, &len);
	if (r < 0) {
		log_error("reading %s: %s", o->agent.bundle_path, fileio_strerror(r));
		return 1;
	}
	struct diag d;
	diag_init(&d, o->agent.bundle_path);
	struct bundle *b = bundle_decode(text, len, &d);
	free(text);
	diag_print(&d, stderr);
	diag_release(&d);
	if (!b)
		return 1;
	if (strcmp(b->node, o->agent.node) != 0) {
		log_error("bundle %s is for node \"%s\", not \"%s\"", o->agent.bundle_path, b->node,
			  o->agent.node);
		bundle_free(b);
		return 1;
	}
	struct inventory *inv = NULL;
	if (o->inventory_path) {
		inv = inventory_new();
		diag_init(&d, o->inventory_path);
		if (!inv || inventory_load_file(inv, o->inventory_path, o->agent.node, 0, &d) < 0 ||
		    inventory_finish(inv, &d) < 0) {
			diag_print(&d, stderr);
			diag_release(&d);
			inventory_free(inv);
			bundle_free(b);
			return 1;
		}
		diag_release(&d);
	}
	int ret = 0;
	for (size_t i = 0; i < b->n_endpoints; i++) {
		const struct bundle_endpoint *ep = &b->endpoints[i];
		const struct endpoint *ie = inv ? inventory_find(inv, o->agent.node, ep->name) : NULL;
		if (inv && !ie)
			continue;
		r = nft_render_text(b, ep, o->agent.nflog_group, o->form, &text);
		if (r < 0) {
			log_error_errno(r, "endpoint %s: rendering its ruleset: %m", ep->name);
			ret = 1;
			continue;
		}
		printf("# endpoint %s%s%s\n%s", ep->name, ie && ie->netns ? " netns " : "",
		       ie && ie->netns ? ie->netns : "", text);
		free(text);
	}
	inventory_free(inv);
	bundle_free(b);
	return ret;
}

/* --metrics-token FILE's token: malloc()ed, or NULL having said why. */
static char *read_token(const char *path)
{
	char *text, *token = NULL;
	size_t len;
	const char *why;
	int r = fileio_read(path, 8192, &text, &len);
	if (r < 0) {
		log_error("--metrics-token %s: %s", path, fileio_strerror(r));
		return NULL;
	}
	if (httpd_token_parse(text, len, &token, &why) < 0)
		log_error("--metrics-token %s: %s", path, why);
	explicit_bzero(text, len);
	free(text);
	return token;
}

/* The agent's HTTP server answers /metrics only. */
static void on_http(void *data, struct httpd_request *r)
{
	if (strcmp(httpd_path(r), "/metrics") != 0)
		return httpd_respond_error(r, 404, "only /metrics here");
	size_t len;
	char *text = metrics_render(telemetry_metrics(data), &len);
	httpd_respond(r, 200, METRICS_CONTENT_TYPE, text, len);
}

struct signals {
	struct loop *loop;
	int fd;
};

static void on_signal(void *data, uint32_t events)
{
	struct signals *sig = data;
	struct signalfd_siginfo si;
	if (read(sig->fd, &si, sizeof(si)) != sizeof(si))
		return;
	log_info("signal %u: exiting; the rules stay in place", si.ssi_signo);
	loop_quit(sig->loop, 0);
}

int main(int argc, char **argv)
{
	struct options o;
	/* The OCI hook: a short-lived process of its own, as root in the
	 * runtime's context (hook.h); none of the daemon's set-up. */
	if (argc > 1 && strcmp(argv[1], "hook") == 0)
		return hook_main(argc - 1, argv + 1);
	log_setup(PROG, false);
	nft_batch_tune_malloc();
	if (parse_options(argc, argv, &o) < 0)
		return 2;
	log_setup(PROG, o.verbose);
	if (o.link.endpoint && o.link.insecure)
		log_warn("--insecure: the controller is not authenticated and neither is this agent");
	if (o.print_ruleset)
		return print_ruleset(&o);
	if (o.n_engines) {
		engine_http_global_init(); /* before any thread */
		if (engine_http_unavailable()) {
			log_error("--engine: %s", engine_http_unavailable());
			return 1;
		}
	}

	/* The controller session's process (session-privsep.h), and the
	 * spool given to whoever writes it: while the agent may still. */
	struct spawner *spawner = NULL;
	if (o.link.endpoint &&
	    session_privsep_setup(&o.session, o.no_privsep ? NULL : o.session_user, &spawner) < 0)
		return 1;

	/* Before any object exists (ZeroMQ starts threads): from here on the
	 * agent holds what setns (SYS_ADMIN) and nftables and NFLOG
	 * (NET_ADMIN) need, and nothing else (README: Deploying). */
	static const int caps[] = {CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SYS_PTRACE};
	uint64_t missing;
	char *err = NULL;
	if (privs_keep_caps(caps, o.cap_ptrace ? 3 : 2, &missing, &err) < 0) {
		log_error("dropping capabilities: %s", err ? err : "failed");
		free(err);
		return 1;
	}
	for (size_t i = 0; i < BH_ARRAY_SIZE(caps); i++)
		if ((missing >> caps[i]) & 1 && !o.null_dataplane)
			log_warn("%s is not permitted to this process: endpoints will fail (run as root, or "
				 "with it in AmbientCapabilities=)",
				 privs_cap_name(caps[i]));
	if (o.agent.state_dir && mkdir(o.agent.state_dir, 0700) < 0 && errno != EEXIST) {
		log_error("creating --state-dir %s: %m", o.agent.state_dir);
		return 1;
	}

	struct loop *loop = loop_new();
	if (!loop) {
		log_error("epoll: %m");
		return 1;
	}
	struct dataplane *dp = o.null_dataplane ? dataplane_null_new(o.agent.nflog_group)
						: dataplane_nft_new(loop, o.agent.nflog_group, o.form);
	if (!dp) {
		log_error("opening the agent's own network namespace: %m");
		loop_free(loop);
		return 1;
	}
	struct agent *agent = agent_new(&o.agent, loop, dp);
	if (o.link.endpoint)
		agent_set_session(
		    agent, spawner ? session_proxy_new(loop, &o.session, spawner, &agent_session_peer, agent)
				   : session_new(loop, &o.session, &agent_session_peer, agent));
	/* The inventory first: at start, a name both report is its. */
	if (o.inventory_path)
		agent_add_source(agent, source_file_new(o.inventory_path, o.agent.node));
	/* The OCI hook asks podman's engine (or the one there is) who a
	 * container is. */
	struct source_hook_engine he = {0};
	for (size_t i = 0; i < o.n_engines; i++) {
		struct source *src = source_engine_new(&o.engines[i]);
		agent_add_source(agent, src);
		if (!he.engine || o.engines[i].kind == ENGINE_PODMAN)
			he = (struct source_hook_engine){src, source_engine_hook, source_engine_hook_cancel};
	}
	struct source *hook = NULL;
	if (o.hook_socket && source_hook_new(o.hook_socket, 0, he.engine ? &he : NULL, &hook) < 0) {
		agent_free(agent);
		loop_free(loop);
		return 1;
	}
	if (hook)
		agent_add_source(agent, hook);
	struct telemetry *telemetry = NULL;
	struct httpd *httpd = NULL;
	if (o.metrics) { /* before the start: its first table updates are measured too */
		char *token = o.metrics_token ? read_token(o.metrics_token) : NULL;
		telemetry = telemetry_new(agent);
		struct httpd_options ho = {.listen = o.metrics, .token = token, .what = "--metrics"};
		int e;
		httpd =
		    (!o.metrics_token || token) ? httpd_new(loop, &ho, on_http, telemetry, &e, &err) : NULL;
		if (token)
			explicit_bzero(token, strlen(token));
		free(token);
		if (!httpd) {
			if (err)
				log_error("%s", err);
			free(err);
			telemetry_free(telemetry);
			agent_free(agent);
			loop_free(loop);
			return 1;
		}
		log_info("metrics on --metrics %s, port %u", o.metrics, httpd_port(httpd));
	}
	unsigned behind = agent_start(agent, o.once);
	int ret = 0;
	if (o.once) {
		if (behind)
			log_error("not up to date: %u endpoint(s) behind or bundle missing/rejected", behind);
		ret = behind ? 1 : 0;
	} else {
		/* signalfd: handlers stay in the loop, no async-signal code. */
		sigset_t mask;
		sigemptyset(&mask);
		sigaddset(&mask, SIGINT);
		sigaddset(&mask, SIGTERM);
		sigprocmask(SIG_BLOCK, &mask, NULL);
		struct signals sig = {loop, signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)};
		if (sig.fd < 0 || !loop_add_fd(loop, sig.fd, EPOLLIN, on_signal, &sig)) {
			log_error("signalfd: %m");
			ret = 1;
		} else {
			log_info("running for node %s", o.agent.node);
			ret = loop_run(loop) < 0 ? 1 : 0;
		}
		if (sig.fd >= 0)
			close(sig.fd);
	}
	agent_stop(agent);
	httpd_free(httpd);
	telemetry_free(telemetry);
	agent_free(agent);
	loop_free(loop);
	return ret;
}
