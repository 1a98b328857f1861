/* spawner: the small process that makes the agent's session children
 * (session-privsep.h).
 *
 * A child must become the session user, which takes CAP_SETUID and
 * CAP_SETGID, and be killed when it floods or hangs, which takes CAP_KILL
 * (it is another user's process); the enforcer keeps CAP_NET_ADMIN and
 * CAP_SYS_ADMIN only. So before the enforcer drops its capabilities it
 * forks the spawner, which keeps CAP_SETUID, CAP_SETGID, CAP_SETPCAP (to
 * empty a child's bounding set) and CAP_KILL and nothing else, no new
 * privileges, holds no other descriptor, reads nothing but the enforcer's
 * one-byte requests, and dies with it (PR_SET_PDEATHSIG). On request it
 * kills the child it made last, if any, and forks a new one: the child
 * takes the directory given as its working directory, becomes the user
 * (every capability gone, the bounding set empty, no new privileges, not
 * dumpable, killed with the spawner) and runs child_main on its end of a
 * new SOCK_SEQPACKET socketpair; the other end goes to the enforcer
 * (SCM_RIGHTS). */
#pragma once

#include <sys/types.h>

#include "bulkhead/common.h"

struct spawner_options {
	const char *user; /* the children's user (privs_become_user()) */
	int dir_fd;	  /* the children's working directory (the spawner takes it) */
	int (*child_main)(int fd, void *arg);
	void *arg; /* what the children find in the spawner's copy of memory */
};

struct spawner;

/* Forks the spawner and waits until it is ready. Single-threaded, before
 * the capabilities are dropped. NULL with *err a malloc()ed message. */
struct spawner *spawner_new(const struct spawner_options *o, char **err);
/* The spawner waits a moment for its child, if any, to exit (it was told
 * to stop), kills it if it does not, and exits; waited for. Accepts NULL. */
void spawner_free(struct spawner *sp);

/* A new child (the last one killed first): *fd our end of its channel,
 * *pid its pid. 0, or a negative errno (logged): -EPIPE the spawner is
 * gone (no more children), -ETIMEDOUT it did not answer. */
BH_MUST_CHECK int spawner_spawn(struct spawner *sp, int *fd, pid_t *pid);
/* The children's user, as given. */
const char *spawner_user(const struct spawner *sp);
/* Kills the last child made, if it still runs. */
void spawner_kill(struct spawner *sp);
