/* The hook socket (agent/source-hook.c) on a real unix socket and the
 * agent's event loop, before a fake core (the sink): what each answer is
 * for each thing the core says (enforced, quarantined, unmanaged, the
 * hook's own quarantine), a claim that waits for the engine to hear of
 * the container, deadlines, a hook that hangs up, a peer of another uid,
 * malformed and oversized requests, and two agents on one path. No root:
 * the namespace handed over is the test's own. */
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
#include "source.h"
#include "test.h"

/* ---- the fake core ---- */

static struct fake_core {
	int claim_result; /* what a claim returns */
	unsigned claims, enforces, cancels, isolates;
	int isolate_result;
	int enforce_result; /* 1: hold the waiter; else done(result) at once */
	struct source_waiter *held;
	char claimed_id[HOOK_ID_MAX + 1];
	bool claimed_with_netns;
} core;

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
	snprintf(core.claimed_id, sizeof(core.claimed_id), "%s", cl->id);
	core.claimed_with_netns = cl->netns != NULL;
	if (core.claim_result == 0)
		snprintf(name, namelen, "web-1");
	return core.claim_result;
}

static void fc_heard(void *c, struct source *s, const char *id)
{
}

static int fc_isolate(void *c, struct source *s, const char *name, char *why, size_t whylen)
{
	core.isolates++;
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
    .claim = fc_claim,
    .heard = fc_heard,
    .isolate = fc_isolate,
};

/* ---- the world: a directory, a loop, the source ---- */

static char dir[40], path[80];
static struct loop *loop;

static void reset_core(void)
{
	core = (struct fake_core){.claim_result = 0, .enforce_result = 0, .isolate_result = 0};
}

static struct source *hook_start(unsigned uid)
{
	struct source *s = NULL;
	if (source_hook_new(path, uid, &s) < 0)
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

TEST(a_container_whose_table_is_in_place_is_told_so)
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
	CHECK_STR(core.claimed_id, "c1");
	/* The path the hook gave names the namespace it handed over. */
	CHECK(core.claimed_with_netns);
	CHECK(core.enforces == 1 && core.isolates == 0);
	close(fd);
	s->ops->free(s);
}

TEST(a_claim_waits_for_the_engine_to_hear_of_the_container)
{
	reset_core();
	struct source *s = hook_start(getuid());
	core.claim_result = -EAGAIN;
	int fd = ask("c2", 5000);
	pump(50);
	struct hook_reply r;
	CHECK(answer(fd, &r) == -1); /* still waiting */
	CHECK(core.claims == 1);
	s->ops->heard(s, "another"); /* not this one: not asked again */
	CHECK(core.claims == 1);
	core.claim_result = 0;
	core.enforce_result = 1;
	s->ops->heard(s, "c2");
	CHECK(core.claims == 2 && core.held != NULL);
	pump(20);
	CHECK(answer(fd, &r) == -1); /* its table is on its way */
	core.held->done(core.held, 0, NULL);
	CHECK(answer(fd, &r) == 1 && r.result == HOOK_ENFORCED);
	close(fd);
	s->ops->free(s);
}

TEST(labels_unknown_in_time_the_hook_quarantines_it)
{
	reset_core();
	struct source *s = hook_start(getuid());
	core.claim_result = -EAGAIN;
	int fd = ask("c3", 60);
	pump(200);
	struct hook_reply r;
	CHECK(answer(fd, &r) == 1);
	CHECK(r.result == HOOK_ISOLATE);
	CHECK(strstr(r.reason, "unknown") != NULL);
	close(fd);
	/* No source could ever know it (no engine): at once. */
	core.claim_result = -ENOENT;
	fd = ask("c3b", 5000);
	pump(30);
	CHECK(answer(fd, &r) == 1 && r.result == HOOK_ISOLATE);
	close(fd);
	s->ops->free(s);
}

TEST(a_table_not_in_place_in_time_is_quarantined_by_the_agent)
{
	reset_core();
	struct source *s = hook_start(getuid());
	core.enforce_result = 1;
	int fd = ask("c4", 60);
	pump(200);
	struct hook_reply r;
	CHECK(answer(fd, &r) == 1);
	CHECK(r.result == HOOK_QUARANTINED);
	CHECK(core.cancels == 1 && core.held == NULL && core.isolates == 1);
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
	core.enforce_result = -EIO;
	fd = ask("c4c", 5000);
	pump(30);
	CHECK(answer(fd, &r) == 1 && r.result == HOOK_QUARANTINED);
	CHECK(strstr(r.reason, "Operation not permitted") != NULL);
	close(fd);
	s->ops->free(s);
}

TEST(a_container_left_out_by_the_engine_starts_as_it_is)
{
	reset_core();
	struct source *s = hook_start(getuid());
	core.claim_result = -EPERM;
	int fd = ask("c5", 5000);
	pump(30);
	struct hook_reply r;
	CHECK(answer(fd, &r) == 1 && r.result == HOOK_UNMANAGED);
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
	/* The agent stops while one waits: it is told to quarantine it. */
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
	CHECK(source_hook_new(path, getuid(), &t) == -EBUSY);
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
	CHECK(source_hook_new(path, getuid(), &t) == -EEXIST);
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
