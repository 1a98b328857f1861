/* `bulkhead-agent hook`, the OCI createRuntime hook (hook.h). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/netlink.h>

#include "bulkhead/escape.h"
#include "bulkhead/fileio.h"
#include "bulkhead/log.h"
#include "hook-proto.h"
#include "hook.h"
#include "netns.h"
#include "nft.h"
#include "quarantine.h"

#define PROG "bulkhead-agent hook"
/* What the runtime's state and the bundle's config.json may weigh. */
#define HOOK_STATE_MAX	(1u << 20)
#define HOOK_CONFIG_MAX (16u << 20)

struct hook_options {
	const char *socket;
	unsigned timeout_ms;
	uint16_t nflog_group;
	bool verbose;
};

/* What is left of the budget, at least 0. */
static int remaining(int64_t deadline)
{
	int64_t left = deadline - clock_mono_ms();
	return left > 0 ? (int)left : 0;
}

/* The runtime's state on stdin, read until EOF or the deadline. */
static int read_state(int64_t deadline, char **out, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = xmalloc(cap + 1);
	for (;;) {
		struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
		int r = poll(&p, 1, remaining(deadline));
		if (r == 0) {
			free(buf);
			return -ETIMEDOUT;
		}
		if (r < 0 && errno == EINTR)
			continue;
		ssize_t k = r < 0 ? -1 : read(STDIN_FILENO, buf + n, cap - n);
		if (k < 0) {
			int e = errno;
			if (e == EINTR || e == EAGAIN)
				continue;
			free(buf);
			return -e;
		}
		if (k == 0)
			break;
		n += (size_t)k;
		if (n == cap) {
			if (cap >= HOOK_STATE_MAX) {
				free(buf);
				return -EFBIG;
			}
			cap *= 2;
			buf = xrealloc(buf, cap + 1);
		}
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

/* The namespace path config.json names, when it names one that is nsfd's
 * (the engine's bind mount: the name the engine reports it by later). */
static void config_netns(const struct hook_state *st, char path[HOOK_PATH_MAX])
{
	char file[HOOK_PATH_MAX + 16], err[256], *text;
	size_t len;
	path[0] = '\0';
	snprintf(file, sizeof(file), "%s/config.json", st->bundle);
	int r = fileio_read(file, HOOK_CONFIG_MAX, &text, &len);
	if (r < 0) {
		log_debug("container %.12s: %s: %s (its namespace goes by /proc/%d/ns/net)", st->id, file,
			  fileio_strerror(r), st->pid);
		return;
	}
	if (hook_config_netns(text, len, path, err, sizeof(err)) < 0)
		log_debug("container %.12s: %s", st->id, err);
	free(text);
}

/* ---- the agent ---- */

/* Sends the request with nsfd and waits for the reply until deadline.
 * 0 with *reply, or a negative errno with why. */
static int ask_agent(const struct hook_options *o, const struct hook_request *req, int nsfd, int64_t deadline,
		     struct hook_reply *reply, char *why, size_t whylen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char buf[HOOK_MSG_MAX + 1];
	size_t len;
	int r;
	if (strlen(o->socket) >= sizeof(sa.sun_path)) {
		snprintf(why, whylen, "%s: too long for a unix socket", o->socket);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, o->socket, strlen(o->socket) + 1);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		snprintf(why, whylen, "socket: %s", strerror(-r));
		return r;
	}
	/* A full backlog (EAGAIN) is an agent that cannot keep up: no waiting. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		snprintf(why, whylen, "no agent answers at %s: %s", o->socket, strerror(-r));
		goto out;
	}
	if ((r = hook_request_encode(req, buf, sizeof(buf), &len)) < 0) {
		snprintf(why, whylen, "the request does not fit");
		goto out;
	}
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl = {0};
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr msg = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &nsfd, sizeof(int));
	if (sendmsg(fd, &msg, MSG_NOSIGNAL) < 0) {
		r = -errno;
		snprintf(why, whylen, "sending to %s: %s", o->socket, strerror(-r));
		goto out;
	}
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int n = poll(&p, 1, remaining(deadline));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n == 0 ? -ETIMEDOUT : -errno;
			snprintf(why, whylen, "the agent did not answer within %u ms", o->timeout_ms);
			goto out;
		}
		ssize_t k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k <= 0) {
			r = k == 0 ? -ECONNRESET : -errno;
			snprintf(why, whylen, "the agent hung up without an answer");
			goto out;
		}
		char err[256];
		if ((r = hook_reply_decode(buf, (size_t)k, reply, err, sizeof(err))) < 0)
			snprintf(why, whylen, "the agent's %s", err);
		goto out;
	}
out:
	close(fd);
	return r;
}

/* ---- the quarantine, by the hook itself ---- */

/* In nsfd's namespace (entered for good: the hook ends after this), the
 * quarantine table, unless a table of the agent's is there already (a
 * valid tag: the agent made it, perhaps just after giving up on us, or a
 * quarantine of its own). 0 or a negative errno with why. */
static int quarantine_self(const struct hook_options *o, int nsfd, bool *kept, char *why, size_t whylen)
{
	struct nft_tag tag;
	*kept = false;
	if (setns(nsfd, CLONE_NEWNET) < 0) {
		int r = -errno;
		snprintf(why, whylen, "entering its network namespace: %s", strerror(-r));
		return r;
	}
	struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		int r = -errno;
		snprintf(why, whylen, "opening nftables in its namespace: %s", strerror(-r));
		if (nl)
			mnl_socket_close(nl);
		return r;
	}
	int r = nft_tag_read(nl, &tag);
	if (r == 0) {
		*kept = true;
		snprintf(why, whylen, "a table of the agent's (%s %.12s) is there already",
			 tag.serial ? "bundle" : "quarantine", tag.hash);
		mnl_socket_close(nl);
		return 0;
	}
	/* The agent's quarantine table (quarantine.h), as the agent would
	 * put it in. */
	struct bundle *q = quarantine_bundle("(hook)");
	struct nft_batch *nb = nft_batch_new(o->nflog_group);
	quarantine_tag(q, &tag);
	if (nb)
		nft_batch_set_tag(nb, &tag);
	r = nb ? nft_batch_build(nb, q, &q->endpoints[0]) : -ENOMEM;
	if (r == 0)
		r = nft_batch_send(nb, nl);
	if (r < 0)
		snprintf(why, whylen, "loading the quarantine table: %s",
			 nb && nft_batch_error(nb)[0] ? nft_batch_error(nb) : strerror(-r));
	nft_batch_free(nb);
	bundle_free(q);
	mnl_socket_close(nl);
	return r;
}

/* ---- the hook ---- */

static int run(const struct hook_options *o)
{
	int64_t start = clock_mono_ms(), deadline = start + o->timeout_ms;
	struct hook_state st;
	char err[512], *text = NULL;
	size_t len = 0;
	int r = read_state(deadline, &text, &len);
	if (r < 0) {
		log_error("reading the OCI state on stdin: %s; the container is not started (fail closed)",
			  strerror(-r));
		return 1;
	}
	r = hook_state_parse(text, len, &st, err, sizeof(err));
	free(text);
	if (r < 0) {
		log_error("%s; the container is not started (fail closed)", err);
		return 1;
	}
	/* Rootless podman runs hooks as its user: those containers live in
	 * the user's own namespaces, which the agent does not manage. */
	if (geteuid() != 0) {
		log_info(
		    "container %.12s: run by uid %u (rootless), which the agent does not manage: no table",
		    st.id, (unsigned)geteuid());
		return 0;
	}
	char nspath[64];
	snprintf(nspath, sizeof(nspath), "/proc/%d/ns/net", st.pid);
	int nsfd = open(nspath, O_RDONLY | O_CLOEXEC);
	struct netns_id ns, self;
	if (nsfd < 0 || netns_fd_identify(nsfd, &ns) < 0) {
		log_error("container %.12s: opening %s: %m; the container is not started (fail closed)",
			  st.id, nspath);
		return 1;
	}
	/* The host's own namespace (--network host) is not firewalled: that
	 * would firewall the node. */
	if (netns_identify("/proc/self/ns/net", &self) == 0 && self.dev == ns.dev && self.ino == ns.ino) {
		log_info("container %.12s shares the host's network namespace: no table", st.id);
		close(nsfd);
		return 0;
	}

	struct hook_request req = {.pid = st.pid};
	snprintf(req.id, sizeof(req.id), "%s", st.id);
	config_netns(&st, req.netns);
	/* The agent answers before our deadline, so that a quarantine it
	 * could not put in is still ours to do. */
	unsigned margin = o->timeout_ms / 5;
	margin = margin < 100 ? 100 : margin > 1000 ? 1000 : margin;
	int left = remaining(deadline);
	req.timeout_ms = left > (int)margin ? (unsigned)left - margin : 1;

	struct hook_reply reply;
	char why[HOOK_REASON_MAX + 128];
	r = ask_agent(o, &req, nsfd, deadline, &reply, why, sizeof(why));
	unsigned ms = (unsigned)(clock_mono_ms() - start);
	if (r == 0) {
		switch (reply.result) {
		case HOOK_ENFORCED:
			log_info("container %.12s (endpoint %s): its table is in place after %u ms", st.id,
				 ESCAPED(reply.endpoint), ms);
			close(nsfd);
			return 0;
		case HOOK_QUARANTINED:
			log_warn("container %.12s (endpoint %s) starts quarantined after %u ms: %s", st.id,
				 ESCAPED(reply.endpoint), ms, ESCAPED(reply.reason));
			close(nsfd);
			return 0;
		case HOOK_UNMANAGED:
			log_info("container %.12s: no table: %s", st.id, ESCAPED(reply.reason));
			close(nsfd);
			return 0;
		default:
			snprintf(why, sizeof(why), "%s", reply.reason);
			break;
		}
	}
	bool kept;
	char qwhy[1200];
	r = quarantine_self(o, nsfd, &kept, qwhy, sizeof(qwhy));
	close(nsfd);
	if (r < 0) {
		log_error("container %.12s: %s; and %s: the container is not started (fail closed)", st.id,
			  ESCAPED(why), qwhy);
		return 1;
	}
	if (kept)
		log_info("container %.12s: %s; but %s", st.id, ESCAPED(why), qwhy);
	else
		log_warn("container %.12s starts quarantined (loopback only) after %u ms: %s", st.id,
			 (unsigned)(clock_mono_ms() - start), ESCAPED(why));
	return 0;
}

static void usage(FILE *out)
{
	fputs("usage: bulkhead-agent hook [--socket PATH] [--timeout-ms N] [--nflog-group N] [--verbose]\n"
	      "\n"
	      "The OCI createRuntime hook: reads the container's state on stdin, hands its network\n"
	      "namespace to the agent and waits until its table is in place; quarantines it (loopback\n"
	      "only) when that does not happen in time. Exit 0: the container may start; 1: not even\n"
	      "the quarantine could be put in (the runtime does not start it).\n"
	      "\n"
	      "  --socket PATH     the agent's --hook-socket (default " HOOK_SOCKET_DEFAULT ")\n"
	      "  --timeout-ms N    the longest the container waits, all told (default 5000)\n"
	      "  --nflog-group N   the agent's --nflog-group, for the quarantine's drops (default 100)\n"
	      "  --verbose         debug messages\n"
	      "Messages go to stderr and syslog (the runtime keeps a hook's stderr only when it fails).\n",
	      out);
}

int hook_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"timeout-ms", required_argument, NULL, 't'},
	    {"nflog-group", required_argument, NULL, 'g'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct hook_options o = {.socket = HOOK_SOCKET_DEFAULT,
				 .timeout_ms = HOOK_TIMEOUT_DEFAULT_MS,
				 .nflog_group = NFT_NFLOG_GROUP_DEFAULT};
	int c;
	char *end;
	unsigned long v;
	log_setup(PROG, false);
	optind = 1;
	while ((c = getopt_long(argc, argv, "hv", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			o.socket = optarg;
			break;
		case 't':
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || v < 100 || v > HOOK_TIMEOUT_MAX_MS) {
				log_error("--timeout-ms: expected 100..%u, not \"%s\"", HOOK_TIMEOUT_MAX_MS,
					  optarg);
				return 2;
			}
			o.timeout_ms = (unsigned)v;
			break;
		case 'g':
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || v > UINT16_MAX) {
				log_error("--nflog-group: expected 0..65535, not \"%s\"", optarg);
				return 2;
			}
			o.nflog_group = (uint16_t)v;
			break;
		case 'v':
			o.verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		log_error("unexpected argument \"%s\"", ESCAPED(argv[optind]));
		return 2;
	}
	log_setup(PROG, o.verbose);
	log_to_syslog();
	return run(&o);
}
