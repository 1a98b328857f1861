/* The process that makes the agent's session children (see spawner.h). */
#include <errno.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bulkhead/log.h"
#include "bulkhead/privs.h"
#include "spawner.h"

#define SPAWNER_TIMEOUT_S    5	  /* an answer takes a fork; past this the spawner is taken for hung */
#define SPAWNER_LAST_WAIT_MS 2000 /* at the end, for a child to exit by itself */

/* A sanitizer's leak check at exit traces the process from a helper,
 * which a process that is not dumpable forbids. */
#if defined(__SANITIZE_ADDRESS__)
#define CHILD_DUMPABLE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHILD_DUMPABLE 1
#endif
#endif
#ifndef CHILD_DUMPABLE
#define CHILD_DUMPABLE 0
#endif

struct spawner {
	char *user;
	pid_t pid;
	int ctl; /* -1: the spawner is gone */
};

/* The spawner's answer to a request (and its first word: ready). */
struct spawner_reply {
	int32_t error; /* 0 or a negative errno */
	int32_t pid;   /* the new child's */
	char message[256];
};

/* ---- in the spawner ---- */

/* Every descriptor but stdio and the two kept. */
static void close_others(int a, int b)
{
	unsigned lo = (unsigned)(a < b ? a : b), hi = (unsigned)(a < b ? b : a);
	if (lo >= 3 && (lo == 3 || syscall(SYS_close_range, 3u, lo - 1, 0u) == 0) &&
	    (hi - lo <= 1 || syscall(SYS_close_range, lo + 1, hi - 1, 0u) == 0) &&
	    syscall(SYS_close_range, hi + 1, ~0u, 0u) == 0)
		return;
	/* Without close_range (an old kernel, a system call filter), one by one. */
	struct rlimit rl;
	int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 1048576
		      ? (int)rl.rlim_cur
		      : 65536;
	for (int fd = 3; fd < max; fd++)
		if (fd != a && fd != b)
			close(fd);
}

static void reply(int ctl, int error, pid_t pid, int fd, const char *message)
{
	struct spawner_reply r = {.error = error, .pid = pid};
	if (message)
		snprintf(r.message, sizeof(r.message), "%s", message);
	struct iovec iov = {&r, sizeof(r)};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	while (sendmsg(ctl, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

static _Noreturn void run_child(int fd, const struct spawner_options *o, pid_t spawner)
{
	prctl(PR_SET_NAME, "bh-session", 0, 0, 0);
	if (fchdir(o->dir_fd) < 0) {
		log_error("session child: entering the state directory: %m");
		_exit(1);
	}
	close(o->dir_fd);
	char *err = NULL;
	if (privs_become_user(o->user, NULL, 0, &err) < 0) {
		log_error("session child: %s", err ? err : "dropping privileges failed");
		_exit(1);
	}
	/* After the user change, which clears it. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != spawner)
		_exit(1);
	/* Not even a process of the same user may read its memory (keys). */
	prctl(PR_SET_DUMPABLE, CHILD_DUMPABLE, 0, 0, 0);
	exit(o->child_main(fd, o->arg));
}

static void kill_child(pid_t *child)
{
	if (*child <= 0)
		return;
	/* Not reaped before: the pid cannot have gone to another process. */
	kill(*child, SIGKILL);
	while (waitpid(*child, NULL, 0) < 0 && errno == EINTR)
		;
	*child = 0;
}

/* At the end: a child that was told to stop gets a moment to exit. */
static void wait_child(pid_t *child)
{
	for (int i = 0; i < SPAWNER_LAST_WAIT_MS / 10 && *child > 0; i++) {
		pid_t r = waitpid(*child, NULL, WNOHANG);
		if (r == *child || (r < 0 && errno == ECHILD))
			*child = 0;
		else
			usleep(10000);
	}
	kill_child(child);
}

static void spawn(int ctl, const struct spawner_options *o, pid_t *child)
{
	kill_child(child);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		reply(ctl, -errno, 0, -1, "socketpair failed");
		return;
	}
	pid_t self = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		reply(ctl, -e, 0, -1, "fork failed");
		return;
	}
	if (pid == 0) {
		close(ctl);
		close(sv[0]);
		run_child(sv[1], o, self);
	}
	close(sv[1]);
	*child = pid;
	reply(ctl, 0, pid, sv[0], NULL);
	close(sv[0]);
}

static _Noreturn void spawner_main(int ctl, const struct spawner_options *o, pid_t parent)
{
	prctl(PR_SET_NAME, "bh-spawner", 0, 0, 0);
	close_others(ctl, o->dir_fd);
	/* The enforcer says when to stop; SIGKILL comes with its death. */
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	static const int keep[] = {CAP_SETUID, CAP_SETGID, CAP_SETPCAP, CAP_KILL};
	uint64_t missing = 0;
	char *err = NULL;
	int r = privs_keep_caps(keep, BH_ARRAY_SIZE(keep), &missing, &err);
	if (r < 0) {
		reply(ctl, r, 0, -1, err ? err : "dropping capabilities failed");
		_exit(1);
	}
	if (missing) {
		char m[256];
		snprintf(m, sizeof(m),
			 "making the session child needs %s%s%s%s (it becomes %s): run the agent as root, or "
			 "give --no-privsep",
			 (missing >> CAP_SETUID) & 1 ? "CAP_SETUID " : "",
			 (missing >> CAP_SETGID) & 1 ? "CAP_SETGID " : "",
			 (missing >> CAP_SETPCAP) & 1 ? "CAP_SETPCAP " : "",
			 (missing >> CAP_KILL) & 1 ? "CAP_KILL " : "", o->user);
		reply(ctl, -EPERM, 0, -1, m);
		_exit(1);
	}
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent)
		_exit(1);
	reply(ctl, 0, 0, -1, NULL);

	pid_t child = 0;
	for (;;) {
		char req;
		ssize_t n = recv(ctl, &req, 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* the enforcer is done */
		if (req == 'S')
			spawn(ctl, o, &child);
		else if (req == 'K')
			kill_child(&child);
	}
	wait_child(&child);
	_exit(0);
}

/* ---- in the enforcer ---- */

static int get_reply(struct spawner *sp, struct spawner_reply *r, int *fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {r, sizeof(*r)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	ssize_t n;
	while ((n = recvmsg(sp->ctl, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	if (fd)
		*fd = -1;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(int))) {
			int got;
			memcpy(&got, CMSG_DATA(cm), sizeof(int));
			if (fd && *fd < 0)
				*fd = got;
			else
				close(got);
		}
	}
	int e = errno;
	if (n == (ssize_t)sizeof(*r)) {
		r->message[sizeof(r->message) - 1] = '\0';
		return 0;
	}
	if (fd && *fd >= 0) {
		close(*fd);
		*fd = -1;
	}
	/* No answer in time, or none at all: this spawner is done for. */
	close(sp->ctl);
	sp->ctl = -1;
	return n < 0 && (e == EAGAIN || e == EWOULDBLOCK) ? -ETIMEDOUT : -EPIPE;
}

struct spawner *spawner_new(const struct spawner_options *o, char **err)
{
	*err = NULL;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		if (asprintf(err, "socketpair: %s", strerror(errno)) < 0)
			*err = NULL;
		return NULL;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		if (asprintf(err, "fork: %s", strerror(e)) < 0)
			*err = NULL;
		return NULL;
	}
	if (pid == 0) {
		close(sv[0]);
		spawner_main(sv[1], o, parent);
	}
	close(sv[1]);
	close(o->dir_fd); /* the spawner's now */
	struct spawner *sp = xcalloc(1, sizeof(*sp));
	sp->user = xstrdup(o->user);
	sp->pid = pid;
	sp->ctl = sv[0];
	struct timeval tv = {.tv_sec = SPAWNER_TIMEOUT_S};
	setsockopt(sp->ctl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct spawner_reply r;
	int rc = get_reply(sp, &r, NULL);
	if (rc == 0 && r.error == 0)
		return sp;
	if (asprintf(err, "%s", rc < 0 ? "the session spawner did not start" : r.message) < 0)
		*err = NULL;
	spawner_free(sp);
	return NULL;
}

void spawner_free(struct spawner *sp)
{
	if (!sp)
		return;
	if (sp->ctl >= 0)
		close(sp->ctl);
	while (waitpid(sp->pid, NULL, 0) < 0 && errno == EINTR)
		;
	free(sp->user);
	free(sp);
}

int spawner_spawn(struct spawner *sp, int *fd, pid_t *pid)
{
	if (sp->ctl < 0)
		return -EPIPE;
	if (send(sp->ctl, "S", 1, MSG_NOSIGNAL) < 0) {
		close(sp->ctl);
		sp->ctl = -1;
		return log_error_errno(-EPIPE, "the session spawner is gone: no controller session any more");
	}
	struct spawner_reply r;
	int got = -1;
	int rc = get_reply(sp, &r, &got);
	if (rc < 0)
		return log_error_errno(rc, "the session spawner %s: no controller session any more",
				       rc == -ETIMEDOUT ? "does not answer" : "is gone");
	if (r.error < 0 || got < 0) {
		if (got >= 0)
			close(got);
		return log_error_errno(r.error < 0 ? r.error : -EIO, "making a session child: %s: %m",
				       r.message[0] ? r.message : "no channel");
	}
	*fd = got;
	*pid = r.pid;
	return 0;
}

void spawner_kill(struct spawner *sp)
{
	if (sp->ctl >= 0 && send(sp->ctl, "K", 1, MSG_NOSIGNAL) < 0) {
		close(sp->ctl);
		sp->ctl = -1;
	}
}

const char *spawner_user(const struct spawner *sp)
{
	return sp->user;
}
