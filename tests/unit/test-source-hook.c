/* The hook socket (agent/source-hook.c) on a real unix socket and the
 * agent's event loop, before a fake core (the sink) and a fake engine:
 * what each answer is for each thing they say (enforced, quarantined,
 * unmanaged, the hook's own quarantine), an engine that hears of the
 * container only after the hook began, deadlines, a hook that hangs up, a
 * peer of another uid, malformed and oversized requests, and two agents
 * on one path. No root: the namespace handed over is the test's own. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bulkhead/log.h"
#include "bulkhead/loop.h"
#include "hook-proto.h"
#include "source-hook.h"
#include "test.h"

/* ---- the fake core ---- */

static struct fake_core {
	int claim_result; /* what a claim returns */
	unsigned claims, enforces, cancels, isolates;
	int isolate_result;
	int enforce_result; /* 1: hold the waiter; else done(result) at once */
	struct source_waiter *held;
	bool claimed_with_netns;
	char isolated[64];
} core;

/* ---- the fake engine ---- */

static struct fake_engine {
	int result;    /* 2: hold the waiter (not heard of yet, or its table on its way); else done(result) */
	bool reported; /* when holding: reported under "ctr-1" already */
	struct engine_hook_waiter *held;
	unsigned hooks, cancels;
	char id[HOOK_ID_MAX + 1], netns[HOOK_PATH_MAX];
	bool had_fd;
} engine;
static struct source engine_src;

static void fe_hook(struct source *s, struct engine_hook_waiter *w)
{
	engine.hooks++;
	snprintf(engine.id, sizeof(engine.id), "%s", w->id);
	snprintf(engine.netns, sizeof(engine.netns), "%s", w->netns);
	engine.had_fd = w->netns_fd && *w->netns_fd >= 0;
	w->endpoint = engine.reported ? xstrdup("ctr-1") : NULL;
	if (engine.result == 2) {
		engine.held = w;
		return;
	}
	char *name = w->endpoint;
	w->endpoint = NULL;
	w->done(w, engine.result, engine.result == 1 ? NULL : "ctr-1",
		engine.result == 1 ? "--select app=shop: it has no label app"
		: engine.result	   ? "rule: kernel: No"
				   : NULL);
	free(name);
}

static void fe_cancel(struct source *s, struct engine_hook_waiter *w)
{
	engine.cancels++;
	if (engine.held == w)
		engine.held = NULL;
	free(w->endpoint);
	w->endpoint = NULL;
}

/* The engine, holding w, finishes it. */
static void engine_done(int result)
{
	struct engine_hook_waiter *w = engine.held;
	engine.held = NULL;
	char *name = w->endpoint ? w->endpoint : xstrdup("ctr-1");
	w->endpoint = NULL;
	w->done(w, result, name, NULL);
	free(name);
}

static void fc_set_all(void *c, struct source *s, const struct source_endpoint *v, size_t n)
{
}
static void fc_update(void *c, struct source *s, const struct source_endpoint *ep)
{
}
static void fc_remove(void *c, struct source *s, const char *name)
{
}
static void fc_rejected(void *c, struct source *s)
{
}

static void fc_enforce(void *c, struct source *s, struct source_waiter *w)
{
	core.enforces++;
	if (core.enforce_result == 1) {
		core.held = w;
		return;
	}
	w->done(w, core.enforce_result,
		core.enforce_result ? "rule ingress[0]: kernel: Operation not permitted" : NULL);
}

static void fc_cancel(void *c, struct source_waiter *w)
{
	if (core.held == w)
		core.held = NULL;
	core.cancels++;
}

static int fc_claim(void *c, struct source *s, const struct source_claim *cl, char *name, size_t namelen)
{
	core.claims++;
	core.claimed_with_netns = cl->netns != NULL;
	if (core.claim_result == 0)
		snprintf(name, namelen, "web-1");
	return core.claim_result;
}

static void fc_quarantine(void *c, struct source *s, const char *netns)
{
}
static void fc_changed(void *c, struct source *s)
{
}

static int fc_isolate(void *c, struct source *s, const char *name, char *why, size_t whylen)
{
	core.isolates++;
	snprintf(core.isolated, sizeof(core.isolated), "%s", name);
	if (core.isolate_result < 0)
		snprintf(why, whylen, "its namespace is not open");
	return core.isolate_result;
}

static const struct source_sink sink = {
    .set_all = fc_set_all,
    .update = fc_update,
    .remove = fc_remove,
    .rejected = fc_rejected,
    .enforce = fc_enforce,
    .cancel = fc_cancel,
    .quarantine = fc_quarantine,
    .changed = fc_changed,
    .claim = fc_claim,
    .isolate = fc_isolate,
};

/* ---- the world: a directory, a loop, the source ---- */

static char dir[40], path[80];
static struct loop *loop;

static bool with_engine;
static void reset_core(void)
{
	core = (struct fake_core){.claim_result = 0, .enforce_result = 0, .isolate_result = 0};
	engine = (struct fake_engine){.result = 0};
	with_engine = true;
}

static struct source *hook_start(unsigned uid)
{
	struct source *s = NULL;
	struct source_hook_engine e = {&engine_src, fe_hook, fe_cancel};
	if (source_hook_new(path, uid, with_engine ? &e : NULL, &s) < 0)
		return NULL;
	s->sink = &sink;
	s->core = &core;
	if (s->ops->start(s, loop, false) < 0) {
		s->ops->free(s);
		return NULL;
	}
	return s;
}

static void on_quit(void *data, uint32_t events)
{
	loop_quit(data, 0);
}

/* Runs the loop for ms. */
static void pump(unsigned ms)
{
	struct loop_source *t = loop_add_timer(loop, ms, on_quit, loop);
	loop_run(loop);
	loop_remove(loop, t);
}

/* A hook: connects and sends msg with fds. The connected socket, or -1. */
static int hook_send(const char *msg, const int *fds, int n_fds)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} ctl = {0};
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = strlen(msg)};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	if (n_fds) {
		m.msg_control = ctl.buf;
		m.msg_controllen = CMSG_SPACE((size_t)n_fds * sizeof(int));
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN((size_t)n_fds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, (size_t)n_fds * sizeof(int));
	}
	if (sendmsg(fd, &m, MSG_NOSIGNAL) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int netns_fd(void)
{
	return open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
}

/* A well-formed request for container id with timeout ms, our namespace. */
static int ask(const char *id, unsigned ms)
{
	char msg[512];
	snprintf(msg, sizeof(msg),
		 "{\"version\":1,\"id\":\"%s\",\"pid\":%d,\"timeout_ms\":%u,\"netns\":\"/proc/self/ns/net\"}",
		 id, (int)getpid(), ms);
	int ns = netns_fd();
	int fd = hook_send(msg, &ns, 1);
	close(ns);
	return fd;
}

/* The answer on fd: 1 and *r, 0 hung up without one, -1 none yet. */
static int answer(int fd, struct hook_reply *r)
{
	char buf[HOOK_MSG_MAX + 1], err[256];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n < 0)
		return errno == ECONNRESET ? 0 : -1; /* closed with our request unread: no answer */
	if (n == 0)
		return 0;
	return hook_reply_decode(buf, (size_t)n, r, err, sizeof(err)) == 0 ? 1 : -2;
}

/* ---- the cases ---- */

TEST(a_namespace_an_endpoint_holds_waits_for_that_table)
{
	reset_core();
	struct source *s = hook_start(getuid());
	CHECK(s != NULL);
	int fd = ask("c1", 5000);
	CHECK(fd >= 0);
	pump(50);
	struct hook_reply r;
	CHECK(answer(fd, &r) == 1);
	CHECK(r.result == HOOK_ENFORCED);
	CHECK_STR(r.endpoint, "web-1");
	/* The path the hook gave names the namespace it handed over. */
	CHECK(core.claimed_with_netns);
	CHECK(core.enforces == 1 && core.isolates == 0 && engine.hooks == 0);
	close(fd);
	/* Held until the table is there. */
	core.enforce_result = 1;
	fd = ask("c1b", 5000);
	pump(30);
	CHECK(answer(fd, &r) == -1);
	core.held->done(core.held, 0, NULL);
	CHECK(answer(fd, &r) == 1 && r.result == HOOK_ENFORCED);
	close(fd);
	s->ops->free(s);
}

TEST(the_engine_names_a_container_it_hears_of_after_the_hook_began)
{
	reset_core();
	struct source *s = hook_start(getuid());
	core.claim_result = -ENOENT;
	engine.result = 2;
	int fd = ask("c2", 5000);
	pump(50);
	struct hook_reply r;
	CHECK(answer(fd, &r) == -1); /* still waiting */
	CHECK(engine.hooks == 1 && engine.held != NULL);
	CHECK_STR(engine.id, "c2");
	CHECK_STR(engine.netns, "/proc/self/ns/net"); /* the hook's path, checked */
	CHECK(engine.had_fd);
	/* The create event, then its table. */
	engine_done(0);
	CHECK(answer(fd, &r) == 1 && r.result == HOOK_ENFORCED);
	CHECK_STR(r.endpoint, "ctr-1");
	close(fd);
	s->ops->free(s);
}

TEST(labels_unknown_in_time_the_hook_quarantines_it)
{
	reset_core();
	struct source *s = hook_start(getuid());
	core.claim_result = -ENOENT;
	engine.result = 2;
	int fd = ask("c3", 60);
	pump(200);
	struct hook_reply r;
	CHECK(answer(fd, &r) == 1);
	CHECK(r.result == HOOK_ISOLATE);
	CHECK(strstr(r.reason, "unknown") != NULL);
	CHECK(engine.cancels == 1 && engine.held == NULL && core.isolates == 0);
	close(fd);
	s->ops->free(s);
	/* No engine at all: at once. */
	reset_core();
	with_engine = false;
	s = hook_start(getuid());
	core.claim_result = -ENOENT;
	fd = ask("c3b", 5000);
	pump(30);
	CHECK(answer(fd, &r) == 1 && r.result == HOOK_ISOLATE);
	CHECK(strstr(r.reason, "no --engine") != NULL);
	close(fd);
	s->ops->free(s);
}

TEST(a_table_not_in_place_in_time_is_quarantined_by_the_agent)
{
	reset_core();
	struct source *s = hook_start(getuid());
	core.claim_result = -ENOENT;
	engine.result = 2;
	engine.reported = true; /* named, its table not there in time */
	int fd = ask("c4", 60);
	pump(200);
	struct hook_reply r;
	CHECK(answer(fd, &r) == 1);
	CHECK(r.result == HOOK_QUARANTINED);
	CHECK_STR(r.endpoint, "ctr-1");
	CHECK(engine.cancels == 1 && core.isolates == 1);
	CHECK_STR(core.isolated, "ctr-1");
	close(fd);
	/* When the agent cannot either, the hook is told to. */
	core.isolate_result = -ENOENT;
	fd = ask("c4b", 60);
	pump(200);
	CHECK(answer(fd, &r) == 1);
	CHECK(r.result == HOOK_ISOLATE);
	CHECK(strstr(r.reason, "not open") != NULL);
	close(fd);
	/* A table that fails to apply: quarantined at once, with why. */
	core.isolate_result = 0;
	engine.result = -EIO;
	fd = ask("c4c", 5000);
	pump(30);
	CHECK(answer(fd, &r) == 1 && r.result == HOOK_QUARANTINED);
	CHECK(strstr(r.reason, "kernel") != NULL);
	close(fd);
	/* The same for a namespace an endpoint holds. */
	core.claim_result = 0;
	core.enforce_result = 1;
	fd = ask("c4d", 60);
	pump(200);
	CHECK(answer(fd, &r) == 1 && r.result == HOOK_QUARANTINED);
	CHECK(core.cancels == 1 && core.held == NULL);
	CHECK_STR(core.isolated, "web-1");
	close(fd);
	s->ops->free(s);
}

TEST(a_container_left_out_by_the_engine_starts_as_it_is)
{
	reset_core();
	struct source *s = hook_start(getuid());
	core.claim_result = -ENOENT;
	engine.result = 1;
	int fd = ask("c5", 5000);
	pump(30);
	struct hook_reply r;
	CHECK(answer(fd, &r) == 1 && r.result == HOOK_UNMANAGED);
	CHECK(strstr(r.reason, "--select") != NULL);
	close(fd);
	s->ops->free(s);
}

TEST(a_hook_that_hangs_up_is_forgotten)
{
	reset_core();
	struct source *s = hook_start(getuid());
	core.enforce_result = 1;
	int fd = ask("c6", 5000);
	pump(30);
	CHECK(core.held != NULL);
	close(fd);
	pump(30);
	CHECK(core.held == NULL && core.cancels == 1);
	/* The same while the engine has it. */
	core.claim_result = -ENOENT;
	engine.result = 2;
	fd = ask("c6a", 5000);
	pump(30);
	CHECK(engine.held != NULL);
	close(fd);
	pump(30);
	CHECK(engine.held == NULL && engine.cancels == 1);
	/* The agent stops while one waits: it is told to quarantine it. */
	core.claim_result = 0;
	fd = ask("c6b", 5000);
	pump(30);
	core.held->done(core.held, -ECANCELED, "the agent stops");
	struct hook_reply r;
	CHECK(answer(fd, &r) == 1 && r.result == HOOK_ISOLATE);
	close(fd);
	/* Freed with one waiting: its hook sees the connection close. */
	fd = ask("c6c", 5000);
	pump(30);
	s->ops->free(s);
	CHECK(answer(fd, &r) == 0);
	close(fd);
}

TEST(malformed_requests_are_answered_isolate_and_counted)
{
	reset_core();
	struct source *s = hook_start(getuid());
	int ns = netns_fd(), two[2] = {ns, ns}, p[2];
	CHECK(pipe(p) == 0);
	static const char good[] = "{\"version\":1,\"id\":\"m\",\"pid\":1,\"timeout_ms\":1000}";
	char big[HOOK_MSG_MAX + 100];
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	struct {
		const char *msg;
		const int *fds;
		int n;
		const char *why;
	} bad[] = {
	    {good, NULL, 0, "0 fds"},
	    {good, two, 2, "2 fds"},
	    {good, p, 1, "not a network namespace"},
	    {"{\"version\":1,\"id\":\"m\"}", &ns, 1, "pid"},
	    {"nonsense", &ns, 1, "not JSON"},
	    {big, &ns, 1, "too long"},
	};
	for (size_t i = 0; i < BH_ARRAY_SIZE(bad); i++) {
		int fd = hook_send(bad[i].msg, bad[i].fds, bad[i].n);
		pump(30);
		struct hook_reply r;
		int a = answer(fd, &r);
		if (a != 1 || r.result != HOOK_ISOLATE || !strstr(r.reason, bad[i].why)) {
			fprintf(stderr, "  case %zu: %d \"%s\"\n", i, a, a == 1 ? r.reason : "");
			CHECK(false);
		}
		close(fd);
	}
	CHECK(core.claims == 0);
	/* A connection that says nothing is closed after a while. */
	int fd = hook_send("", NULL, 0);
	(void)fd;
	close(ns);
	close(p[0]);
	close(p[1]);
	s->ops->free(s);
}

TEST(another_uid_is_refused_without_an_answer)
{
	reset_core();
	struct source *s = hook_start(getuid() + 1);
	int fd = ask("c7", 5000);
	pump(30);
	struct hook_reply r;
	CHECK(fd < 0 || answer(fd, &r) == 0);
	CHECK(core.claims == 0);
	if (fd >= 0)
		close(fd);
	s->ops->free(s);
}

TEST(two_agents_do_not_share_a_socket_and_a_dead_ones_is_taken_over)
{
	reset_core();
	struct source *s = hook_start(getuid()), *t = NULL;
	CHECK(s != NULL);
	CHECK(source_hook_new(path, getuid(), NULL, &t) == -EBUSY);
	/* The first still answers. */
	int fd = ask("c8", 5000);
	pump(30);
	struct hook_reply r;
	CHECK(answer(fd, &r) == 1 && r.result == HOOK_ENFORCED);
	close(fd);
	/* Gone (its socket file left behind): the next one takes the path. */
	s->ops->free(s);
	CHECK(access(path, F_OK) == 0);
	fd = ask("c8b", 5000);
	CHECK(fd < 0); /* nobody listens: the hook quarantines by itself */
	t = hook_start(getuid());
	CHECK(t != NULL);
	fd = ask("c8c", 5000);
	pump(30);
	CHECK(answer(fd, &r) == 1 && r.result == HOOK_ENFORCED);
	close(fd);
	if (t)
		t->ops->free(t);
	/* Something that is no socket at the path is left alone. */
	unlink(path);
	CHECK(close(open(path, O_CREAT | O_WRONLY, 0600)) == 0);
	CHECK(source_hook_new(path, getuid(), NULL, &t) == -EEXIST);
	unlink(path);
}

int main(void)
{
	log_setup("test-source-hook", false);
	snprintf(dir, sizeof(dir), "/tmp/test-source-hook.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/run/hook.sock", dir);
	loop = loop_new();
	int ret = test_main();
	loop_free(loop);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		ret = 1;
	return ret;
}
