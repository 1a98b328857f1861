/* The OCI hook's socket as an endpoint source (source-hook.h; DESIGN §3,
 * no window without rules). The runtime runs `bulkhead-agent hook`
 * (hook.c) before a container's first instruction; the hook hands over
 * the container's id and network namespace here (hook-proto.h) and waits.
 * This source finds the container's endpoint (one that holds the
 * namespace already, source_claim(); else the engine's, which knows its
 * name and labels from its create event, perhaps only a little after the
 * hook began: source_engine_hook()), waits until its table is in place
 * and answers, or, when time runs out first, quarantines it
 * (source_isolate()) and says so. Nothing here blocks the loop: every socket is non-blocking, every
 * connection has a deadline, and what a peer sends is bounded and
 * checked. Only peer_uid (root) may connect (SO_PEERCRED). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "bulkhead/escape.h"
#include "bulkhead/log.h"
#include "hook-proto.h"
#include "netns.h"
#include "source-hook.h"

#define HOOK_CONNS_MAX 64   /* connections at once; more are refused (closed) */
#define HOOK_READ_MS   2000 /* a connection's request must come within this */
#define HOOK_ACCEPTS   16   /* connections taken per wake-up */
#define HOOK_FDS_MAX   4    /* fds a request's control data may carry (only one is used) */

enum conn_state {
	CONN_READING, /* no request yet */
	CONN_ENGINE,  /* the engine's to name, and its table on its way (ew) */
	CONN_WAITING, /* the endpoint's table is on its way (w) */
};

struct hook_conn {
	struct source_hook *h;
	int fd;
	struct loop_source *io, *timer;
	enum conn_state state;
	struct hook_request req;
	int nsfd;		   /* the container's namespace, -1 until the request */
	bool netns_checked;	   /* req.netns names nsfd's namespace */
	char netns[HOOK_PATH_MAX]; /* what the endpoint's namespace goes by */
	char name[HOOK_NAME_MAX];
	struct source_waiter w;
	bool waiting; /* the core holds w */
	struct engine_hook_waiter ew;
	bool engine_waiting; /* the engine holds ew */
	uint64_t since_ms;
	struct hook_conn *next;
};

struct source_hook {
	struct source src;
	char *path, *lock_path;
	unsigned peer_uid;
	int fd, lock_fd;
	struct loop *loop;
	struct loop_source *accept_src;
	struct hook_conn *conns;
	unsigned n_conns;
	struct source_hook_engine engine; /* engine.engine NULL: none */
	uint64_t refused, malformed;	  /* logged: the first, then every 100th */
};

static struct hook_conn *conn_of(struct source_waiter *w)
{
	return (struct hook_conn *)((char *)w - offsetof(struct hook_conn, w));
}

/* Short id, as podman and Docker print them. */
static const char *short_id(const struct hook_conn *c)
{
	static char buf[13];
	snprintf(buf, sizeof(buf), "%.12s", c->req.id);
	return buf;
}

static void conn_close(struct hook_conn *c)
{
	struct source_hook *h = c->h;
	if (c->waiting)
		source_cancel(&h->src, &c->w);
	if (c->engine_waiting)
		h->engine.cancel(h->engine.engine, &c->ew);
	loop_remove(h->loop, c->io);
	loop_remove(h->loop, c->timer);
	close(c->fd);
	if (c->nsfd >= 0)
		close(c->nsfd);
	for (struct hook_conn **p = &h->conns; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	h->n_conns--;
	free(c);
}

/* Answers and closes: the hook acts on the answer. */
static void conn_answer(struct hook_conn *c, enum hook_result result, const char *reason)
{
	struct hook_reply r = {.result = result};
	char buf[HOOK_MSG_MAX];
	size_t len;
	snprintf(r.endpoint, sizeof(r.endpoint), "%s", c->name);
	snprintf(r.reason, sizeof(r.reason), "%s", reason ? reason : "");
	unsigned ms = (unsigned)(clock_mono_ms() - c->since_ms);
	bool told = !c->req.id[0]; /* a malformed request: conn_malformed() said it */
	if (hook_reply_encode(&r, buf, sizeof(buf), &len) == 0 &&
	    send(c->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_warn("hook: container %s: answering: %m (the hook quarantines it itself)", short_id(c));
	switch (told ? HOOK_RESULT_COUNT : result) {
	case HOOK_ENFORCED:
		log_info("hook: container %s (endpoint %s): its table is in place after %u ms", short_id(c),
			 c->name, ms);
		break;
	case HOOK_QUARANTINED:
		log_warn("hook: container %s (endpoint %s): quarantined after %u ms: %s", short_id(c),
			 c->name, ms, ESCAPED(reason));
		break;
	case HOOK_UNMANAGED:
		log_info("hook: container %s: not managed here: %s", short_id(c), ESCAPED(reason));
		break;
	case HOOK_ISOLATE:
		log_warn("hook: container %s: the hook quarantines it after %u ms: %s", short_id(c), ms,
			 ESCAPED(reason));
		break;
	default:
		break;
	}
	conn_close(c);
}

/* Something the peer sent was wrong: counted, logged now and then. */
static void conn_malformed(struct hook_conn *c, const char *why)
{
	struct source_hook *h = c->h;
	if (h->malformed++ % 100 == 0)
		log_warn("hook socket %s: malformed request (%llu so far): %s", h->path,
			 (unsigned long long)h->malformed, ESCAPED(why));
	conn_answer(c, HOOK_ISOLATE, why);
}

/* Its time is up: isolate what can be, say what was done. */
static void conn_expire(struct hook_conn *c)
{
	char reason[HOOK_REASON_MAX], why[400];
	switch (c->state) {
	case CONN_READING:
		log_debug("hook socket %s: a connection sent no request within %u ms", c->h->path,
			  HOOK_READ_MS);
		conn_close(c);
		return;
	case CONN_ENGINE:
		/* Reported already (its name and labels known): the engine goes
		 * on with it, quarantined until its table comes. */
		if (c->ew.endpoint)
			snprintf(c->name, sizeof(c->name), "%s", c->ew.endpoint);
		c->h->engine.cancel(c->h->engine.engine, &c->ew);
		c->engine_waiting = false;
		if (!c->name[0]) {
			snprintf(reason, sizeof(reason),
				 "its name and labels are unknown: the engine reported no container %.64s "
				 "within %u ms",
				 c->req.id, c->req.timeout_ms);
			conn_answer(c, HOOK_ISOLATE, reason);
			return;
		}
		break;
	case CONN_WAITING:
		if (c->waiting)
			source_cancel(&c->h->src, &c->w);
		c->waiting = false;
		break;
	}
	if (source_isolate(&c->h->src, c->name, why, sizeof(why)) == 0) {
		snprintf(reason, sizeof(reason), "its table was not in place within %u ms",
			 c->req.timeout_ms);
		conn_answer(c, HOOK_QUARANTINED, reason);
	} else {
		snprintf(reason, sizeof(reason),
			 "its table was not in place within %u ms, nor could the agent quarantine it: %s",
			 c->req.timeout_ms, why);
		conn_answer(c, HOOK_ISOLATE, reason);
	}
}

static void on_timer(void *data, uint32_t events)
{
	conn_expire(data);
}

/* The table is there (0), or not to be. */
static void conn_done(struct hook_conn *c, int result, const char *error)
{
	char reason[HOOK_REASON_MAX], why[400];
	if (result == 0) {
		conn_answer(c, HOOK_ENFORCED, NULL);
		return;
	}
	if (result == -ECANCELED) { /* the agent stops: the hook does it */
		conn_answer(c, HOOK_ISOLATE, "the agent stops");
		return;
	}
	snprintf(reason, sizeof(reason), "its table could not be put in place: %s",
		 error ? error : strerror(-result));
	if (c->name[0] && source_isolate(&c->h->src, c->name, why, sizeof(why)) == 0) {
		conn_answer(c, HOOK_QUARANTINED, reason);
		return;
	}
	conn_answer(c, HOOK_ISOLATE, reason);
}

static void on_done(struct source_waiter *w, int result, const char *error)
{
	struct hook_conn *c = conn_of(w);
	c->waiting = false; /* the core has let go of it */
	conn_done(c, result, error);
}

static void on_engine_done(struct engine_hook_waiter *w, int result, const char *endpoint, const char *error)
{
	struct hook_conn *c = (struct hook_conn *)((char *)w - offsetof(struct hook_conn, ew));
	c->engine_waiting = false;
	if (endpoint)
		snprintf(c->name, sizeof(c->name), "%s", endpoint);
	if (result == 1) { /* the engine knows it, and it is not an endpoint */
		conn_answer(c, HOOK_UNMANAGED, error ? error : "not an endpoint");
		return;
	}
	conn_done(c, result, error);
}

/* Asks who the container is and waits for its table. May answer (and
 * free c) before it returns. */
static void conn_claim(struct hook_conn *c)
{
	struct source_hook *h = c->h;
	struct source_claim cl = {.netns = c->netns_checked ? c->req.netns : NULL, .netns_fd = c->nsfd};
	char reason[HOOK_REASON_MAX];
	if (source_claim(&h->src, &cl, c->name, sizeof(c->name)) == 0) {
		c->state = CONN_WAITING;
		c->w = (struct source_waiter){.endpoint = c->name, .done = on_done};
		c->waiting = true;
		source_enforce(&h->src, &c->w); /* done() may answer, and free c, before it returns */
		return;
	}
	if (!h->engine.engine) {
		snprintf(
		    reason, sizeof(reason),
		    "its name and labels are unknown: no endpoint holds its namespace, and the agent has no "
		    "--engine");
		conn_answer(c, HOOK_ISOLATE, reason);
		return;
	}
	/* The engine's bind mount when the hook named it, as the engine will
	 * report it (the endpoint is not opened anew then); else the
	 * process's. */
	if (c->netns_checked)
		snprintf(c->netns, sizeof(c->netns), "%s", c->req.netns);
	else
		snprintf(c->netns, sizeof(c->netns), "/proc/%d/ns/net", c->req.pid);
	c->state = CONN_ENGINE;
	c->ew = (struct engine_hook_waiter){
	    .id = c->req.id, .netns = c->netns, .netns_fd = &c->nsfd, .done = on_engine_done};
	c->engine_waiting = true;
	h->engine.hook(h->engine.engine, &c->ew); /* may answer, and free c */
}

/* The request: one message, its namespace as the only fd. */
static void conn_read(struct hook_conn *c)
{
	char buf[HOOK_MSG_MAX + 1], err[256];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(HOOK_FDS_MAX * sizeof(int))];
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
	struct msghdr msg = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
	ssize_t n = recvmsg(c->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	int fds[HOOK_FDS_MAX], n_fds = 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); n >= 0 && cm; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (n_fds < HOOK_FDS_MAX)
				fds[n_fds++] = fd;
			else
				close(fd);
		}
	}
	if (n <= 0) {
		for (int i = 0; i < n_fds; i++)
			close(fds[i]);
		conn_close(c); /* gone before it asked */
		return;
	}
	/* Only the first fd is ours to keep. */
	for (int i = 1; i < n_fds; i++)
		close(fds[i]);
	c->nsfd = n_fds ? fds[0] : -1;
	struct netns_id ns, at;
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC) || (size_t)n > HOOK_MSG_MAX) {
		conn_malformed(c, "request too long");
		return;
	}
	if (n_fds != 1) {
		snprintf(err, sizeof(err), "request with %d fds, not its network namespace's alone", n_fds);
		conn_malformed(c, err);
		return;
	}
	if (hook_request_decode(buf, (size_t)n, &c->req, err, sizeof(err)) < 0) {
		conn_malformed(c, err);
		return;
	}
	if (netns_fd_identify(c->nsfd, &ns) < 0) {
		conn_malformed(c, "the fd of the request is not a network namespace");
		return;
	}
	/* The path names the namespace the hook handed over, or is not used. */
	c->netns_checked =
	    c->req.netns[0] && netns_identify(c->req.netns, &at) == 0 && at.dev == ns.dev && at.ino == ns.ino;
	if (c->req.netns[0] && !c->netns_checked)
		log_info("hook: container %s: %s is not its namespace (not used)", short_id(c), c->req.netns);
	loop_remove(c->h->loop, c->timer);
	c->timer = loop_add_timer(c->h->loop, c->req.timeout_ms, on_timer, c);
	if (!c->timer) {
		conn_answer(c, HOOK_ISOLATE, "the agent has no timer left");
		return;
	}
	conn_claim(c);
}

static void on_conn(void *data, uint32_t events)
{
	struct hook_conn *c = data;
	if (c->state == CONN_READING) {
		conn_read(c);
		return;
	}
	/* After the request the hook only waits: anything now is its
	 * hanging up (or sending what it should not). */
	char byte;
	ssize_t n = recv(c->fd, &byte, 1, MSG_DONTWAIT | MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0)
		conn_malformed(c, "a second message");
	else {
		log_info("hook: container %s: the hook hung up after %u ms", short_id(c),
			 (unsigned)(clock_mono_ms() - c->since_ms));
		conn_close(c);
	}
}

static void on_accept(void *data, uint32_t events)
{
	struct source_hook *h = data;
	for (int i = 0; i < HOOK_ACCEPTS; i++) {
		int fd = accept4(h->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warn("hook socket %s: accept: %m", h->path);
			return;
		}
		struct ucred cred;
		socklen_t len = sizeof(cred);
		const char *refusal = NULL;
		char why[128];
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof(cred)) {
			refusal = "its credentials are unknown";
		} else if (cred.uid != h->peer_uid) {
			snprintf(why, sizeof(why), "uid %u (pid %d) is not uid %u", (unsigned)cred.uid,
				 (int)cred.pid, h->peer_uid);
			refusal = why;
		} else if (h->n_conns >= HOOK_CONNS_MAX) {
			snprintf(why, sizeof(why), "%u connections wait already", h->n_conns);
			refusal = why;
		}
		if (refusal) {
			if (h->refused++ % 100 == 0)
				log_warn("hook socket %s: connection refused (%llu so far): %s", h->path,
					 (unsigned long long)h->refused, refusal);
			close(fd);
			continue;
		}
		struct hook_conn *c = xcalloc(1, sizeof(*c));
		*c = (struct hook_conn){
		    .h = h, .fd = fd, .nsfd = -1, .since_ms = clock_mono_ms(), .next = h->conns};
		c->io = loop_add_fd(h->loop, fd, EPOLLIN | EPOLLRDHUP, on_conn, c);
		c->timer = c->io ? loop_add_timer(h->loop, HOOK_READ_MS, on_timer, c) : NULL;
		h->conns = c;
		h->n_conns++;
		if (!c->timer) {
			log_error("hook socket %s: %m; connection closed", h->path);
			conn_close(c);
		}
	}
}

/* Takes the lock beside the socket: one agent per path. */
static int take_lock(struct source_hook *h)
{
	h->lock_fd = open(h->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (h->lock_fd < 0)
		return log_error_errno(-errno, "--hook-socket: %s: %m", h->lock_path);
	if (flock(h->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		int r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		char pid[32] = "";
		ssize_t n = pread(h->lock_fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		if (r == -EBUSY)
			log_error("--hook-socket %s: another agent (pid %s) listens there; give each agent a "
				  "socket of its own (and its hooks.d entry that path)",
				  h->path, pid[0] ? ESCAPED(pid) : "?");
		else
			log_error_errno(r, "--hook-socket: locking %s: %m", h->lock_path);
		return r;
	}
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(h->lock_fd, 0) < 0 || pwrite(h->lock_fd, pid, (size_t)n, 0) != n)
		log_warn("--hook-socket: writing %s: %m", h->lock_path);
	return 0;
}

/* The lock, then the socket: listening from here on (connections wait
 * in the backlog until the loop runs). */
static int listen_at(struct source_hook *h)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	if (strlen(h->path) >= sizeof(sa.sun_path)) {
		log_error("--hook-socket %s: longer than a unix socket path may be (%zu)", h->path,
			  sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	/* Its directory, root's alone when we make it. */
	char *dir = xstrdup(h->path), *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			log_warn("--hook-socket: creating %s: %m", dir);
	}
	free(dir);
	int r = take_lock(h);
	if (r < 0)
		return r;
	/* Ours now: what is left there is a dead agent's socket. */
	if (lstat(h->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_error("--hook-socket %s: there is something else than a socket there", h->path);
			return -EEXIST;
		}
		if (unlink(h->path) < 0)
			return log_error_errno(-errno, "--hook-socket: removing the old %s: %m", h->path);
	}
	memcpy(sa.sun_path, h->path, strlen(h->path) + 1);
	h->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->fd < 0)
		return log_error_errno(-errno, "--hook-socket: socket: %m");
	/* Connections before the chmod are refused by their credentials. */
	if (bind(h->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(h->path, 0600) < 0 ||
	    listen(h->fd, HOOK_CONNS_MAX) < 0)
		return log_error_errno(-errno, "--hook-socket %s: %m", h->path);
	return 0;
}

static int source_hook_start(struct source *s, struct loop *loop, bool once)
{
	struct source_hook *h = (struct source_hook *)s;
	h->loop = loop;
	if (once)
		return 0; /* no container waits for a run that ends at once */
	if (!(h->accept_src = loop_add_fd(loop, h->fd, EPOLLIN, on_accept, h)))
		return log_error_errno(-errno, "--hook-socket %s: %m", h->path);
	log_info("hook socket %s: listening (uid %u only)", h->path, h->peer_uid);
	return 0;
}

/* Closing a connection makes its hook quarantine the container itself. */
static void source_hook_free(struct source *s)
{
	struct source_hook *h = (struct source_hook *)s;
	while (h->conns)
		conn_close(h->conns);
	if (h->accept_src)
		loop_remove(h->loop, h->accept_src);
	if (h->fd >= 0)
		close(h->fd);
	if (h->lock_fd >= 0)
		close(h->lock_fd);
	free(h->path);
	free(h->lock_path);
	free(h);
}

static const struct source_ops source_hook_ops = {
    .kind = "hook",
    .start = source_hook_start,
    .free = source_hook_free,
};

int source_hook_new(const char *path, unsigned peer_uid, const struct source_hook_engine *engine,
		    struct source **out)
{
	struct source_hook *h = xcalloc(1, sizeof(*h));
	if (engine)
		h->engine = *engine;
	h->src.ops = &source_hook_ops;
	h->path = xstrdup(path);
	size_t n = strlen(path) + sizeof(".lock");
	h->lock_path = xmalloc(n);
	snprintf(h->lock_path, n, "%s.lock", path);
	h->peer_uid = peer_uid;
	h->fd = h->lock_fd = -1;
	int r = listen_at(h);
	if (r < 0) {
		source_hook_free(&h->src);
		return r;
	}
	*out = &h->src;
	return 0;
}
