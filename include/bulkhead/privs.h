/* privs: what a daemon keeps of root's power once it has started (DESIGN
 * §4). The controller becomes an unprivileged user with no capabilities;
 * the agent stays uid 0 with the few capabilities it names. Both end with
 * PR_SET_NO_NEW_PRIVS, so no later exec can gain anything.
 *
 * Capabilities are a thread's, not a process's: these calls refuse to run
 * once a second thread exists (ZeroMQ starts its I/O threads with the
 * first context), since that thread would keep what this one gives up. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "bulkhead/common.h"

/* What the daemon needs of a path it was given, so that a user change is
 * checked before it fails later, further away from its cause. */
enum privs_need {
	PRIVS_OWN_DIR,	    /* written: made 0700 and the user's when missing; it and its files read-write */
	PRIVS_IPC_ENDPOINT, /* a ZeroMQ endpoint: when ipc:// a path, its directory is a PRIVS_OWN_DIR */
	PRIVS_READ_DIR,	    /* read: it and the regular files in it */
	PRIVS_READ_FILE,
};

struct privs_path {
	const char *what; /* how the operator named it, for messages: "--state-dir" */
	const char *path; /* NULL: not given, skipped */
	enum privs_need need;
};

/* Becomes `user` (a name or a number) for good: supplementary groups
 * (initgroups), gid and uid, real, effective and saved, then no
 * capability in any set and no new privileges. As root it first makes
 * each missing PRIVS_OWN_DIR / ipc directory (0700, owned by the user; the
 * parent must exist). Then, as the user, it checks every path against
 * its need and names the first one the user cannot use (owner, mode, what
 * to do about it).
 *
 * user NULL: no user change. As root, every capability is dropped but uid
 * 0 stays (returns 1, so the caller can say so); otherwise any capability
 * held is dropped. The paths are not checked then.
 *
 * 0 (or 1, above), or a negative errno with *err a malloc()ed message:
 * -ENOENT no such user, -EINVAL the user is root, -EPERM not root and
 * asked to become someone else, -EBUSY more than one thread, -EACCES a
 * path the user cannot use. */
BH_MUST_CHECK int privs_become_user(const char *user, const struct privs_path *paths, size_t n_paths,
				    char **err);

/* Keeps only the capabilities keep[0..n) (CAP_* numbers), effective and
 * permitted; the bounding set is cut to them too (when this process holds
 * CAP_SETPCAP, as root does; otherwise it is left as it came, and no new
 * privileges makes it moot). Inheritable and ambient sets are emptied.
 * Sets PR_SET_NO_NEW_PRIVS. The uid does not change.
 *
 * 0 with *missing the bits (1 << CAP_*) of the kept ones that were not
 * permitted to begin with (they stay missing), or a negative errno with
 * *err a malloc()ed message. */
BH_MUST_CHECK int privs_keep_caps(const int *keep, size_t n, uint64_t *missing, char **err);

/* The ids of user (a name or a number) for a user change made later (by
 * privs_become_user() in another process), checked as privs_become_user()
 * checks them: no root, no group root. what names the option in messages
 * ("--session-user"). 0, or a negative errno with *err a malloc()ed
 * message (-ENOENT no such user, -EINVAL root). */
BH_MUST_CHECK int privs_lookup_user(const char *what, const char *user, uid_t *uid, gid_t *gid, char **err);

/* Gives path to uid:gid, so that a process running as that user can write
 * it: a directory (dir; made 0700 when missing) and, when it was not
 * theirs, the regular files directly in it; or a regular file (made empty,
 * 0600, when missing). As root, with CAP_CHOWN. Never follows a symbolic
 * link; a file with more than one link is refused (it may be someone
 * else's, linked in). 0, or a negative errno with *err a malloc()ed
 * message naming the path. */
BH_MUST_CHECK int privs_give_path(const char *path, bool dir, uid_t uid, gid_t gid, char **err);

/* "CAP_NET_ADMIN" for CAP_NET_ADMIN; "CAP_?" for a number it does not
 * know. Static storage. */
const char *privs_cap_name(int cap);
