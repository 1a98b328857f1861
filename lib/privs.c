/* Dropping privileges (see privs.h): raw capset/prctl, no libcap. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bulkhead/privs.h"

const char *privs_cap_name(int cap)
{
	static const char *const names[] = {
	    "CAP_CHOWN",
	    "CAP_DAC_OVERRIDE",
	    "CAP_DAC_READ_SEARCH",
	    "CAP_FOWNER",
	    "CAP_FSETID",
	    "CAP_KILL",
	    "CAP_SETGID",
	    "CAP_SETUID",
	    "CAP_SETPCAP",
	    "CAP_LINUX_IMMUTABLE",
	    "CAP_NET_BIND_SERVICE",
	    "CAP_NET_BROADCAST",
	    "CAP_NET_ADMIN",
	    "CAP_NET_RAW",
	    "CAP_IPC_LOCK",
	    "CAP_IPC_OWNER",
	    "CAP_SYS_MODULE",
	    "CAP_SYS_RAWIO",
	    "CAP_SYS_CHROOT",
	    "CAP_SYS_PTRACE",
	    "CAP_SYS_PACCT",
	    "CAP_SYS_ADMIN",
	    "CAP_SYS_BOOT",
	    "CAP_SYS_NICE",
	    "CAP_SYS_RESOURCE",
	    "CAP_SYS_TIME",
	    "CAP_SYS_TTY_CONFIG",
	    "CAP_MKNOD",
	    "CAP_LEASE",
	    "CAP_AUDIT_WRITE",
	    "CAP_AUDIT_CONTROL",
	    "CAP_SETFCAP",
	    "CAP_MAC_OVERRIDE",
	    "CAP_MAC_ADMIN",
	    "CAP_SYSLOG",
	    "CAP_WAKE_ALARM",
	    "CAP_BLOCK_SUSPEND",
	    "CAP_AUDIT_READ",
	    "CAP_PERFMON",
	    "CAP_BPF",
	    "CAP_CHECKPOINT_RESTORE",
	};
	return cap >= 0 && (size_t)cap < BH_ARRAY_SIZE(names) ? names[cap] : "CAP_?";
}

/* ---- capabilities, by the raw system calls ---- */

struct caps {
	uint64_t eff, prm, inh;
};

static int caps_get(struct caps *c)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
	if (syscall(SYS_capget, &h, d) < 0)
		return -errno;
	c->eff = d[0].effective | (uint64_t)d[1].effective << 32;
	c->prm = d[0].permitted | (uint64_t)d[1].permitted << 32;
	c->inh = d[0].inheritable | (uint64_t)d[1].inheritable << 32;
	return 0;
}

static int caps_set(const struct caps *c)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = {
	    {(uint32_t)c->eff, (uint32_t)c->prm, (uint32_t)c->inh},
	    {(uint32_t)(c->eff >> 32), (uint32_t)(c->prm >> 32), (uint32_t)(c->inh >> 32)},
	};
	return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

/* The highest capability this kernel knows: PR_CAPBSET_READ says EINVAL
 * past it (no need for /proc/sys/kernel/cap_last_cap). */
static int cap_last(void)
{
	int c = 0;
	while (c < 63 && prctl(PR_CAPBSET_READ, (unsigned long)c + 1, 0, 0, 0) >= 0)
		c++;
	return c;
}

/* Threads, from /proc/self/status: each has its own capability sets. */
static int thread_count(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	if (!f)
		return -errno;
	char line[256];
	int n = -ENODATA;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

static int single_threaded(char **err)
{
	int n = thread_count();
	if (n < 0)
		return err_set(err, n, "counting this process's threads in /proc/self/status: %s",
			       strerror(-n));
	if (n != 1)
		return err_set(
		    err, -EBUSY,
		    "dropping privileges with %d threads running: capabilities are per thread, so the "
		    "others would keep them (drop before any library starts a thread)",
		    n);
	return 0;
}

/* Everything but keep out of the bounding set; -EPERM without
 * CAP_SETPCAP (nothing is dropped then). */
static int bounding_cut(uint64_t keep)
{
	int last = cap_last();
	for (int c = 0; c <= last; c++) {
		if ((keep >> c) & 1 || prctl(PR_CAPBSET_READ, (unsigned long)c, 0, 0, 0) != 1)
			continue;
		if (prctl(PR_CAPBSET_DROP, (unsigned long)c, 0, 0, 0) < 0)
			return -errno;
	}
	return 0;
}

/* Effective and permitted to keep, inheritable and ambient empty, no new
 * privileges from here on; then read back, so a kernel that did not do it
 * is an error, not a belief. */
static int caps_settle(uint64_t keep, char **err)
{
	/* Ambient capabilities exist from Linux 4.3; EINVAL before. */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return err_set(err, -errno, "clearing the ambient capabilities: %s", strerror(errno));
	/* Not when they are as wanted already: a service's seccomp filter may
	 * refuse capset (systemd's ~@privileged) to one that needs no call. */
	struct caps c = {.eff = keep, .prm = keep, .inh = 0}, now;
	int r = caps_get(&now);
	if (r == 0 && (now.eff != c.eff || now.prm != c.prm || now.inh != c.inh))
		r = caps_set(&c);
	if (r < 0)
		return err_set(err, r, "capset: %s", strerror(-r));
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return err_set(err, -errno, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	if ((r = caps_get(&now)) < 0)
		return err_set(err, r, "capget: %s", strerror(-r));
	if (now.eff != keep || now.prm != keep || now.inh != 0)
		return err_set(
		    err, -EPERM,
		    "capabilities not as set: effective %#llx, permitted %#llx, inheritable %#llx; "
		    "wanted %#llx",
		    (unsigned long long)now.eff, (unsigned long long)now.prm, (unsigned long long)now.inh,
		    (unsigned long long)keep);
	return 0;
}

int privs_keep_caps(const int *keep, size_t n, uint64_t *missing, char **err)
{
	*err = NULL;
	uint64_t want = 0;
	for (size_t i = 0; i < n; i++) {
		if (keep[i] < 0 || keep[i] > 63)
			return err_set(err, -EINVAL, "capability %d: out of range", keep[i]);
		want |= UINT64_C(1) << keep[i];
	}
	int r = single_threaded(err);
	if (r < 0)
		return r;
	struct caps c;
	if ((r = caps_get(&c)) < 0)
		return err_set(err, r, "capget: %s", strerror(-r));
	r = (c.eff >> CAP_SETPCAP) & 1 ? bounding_cut(want) : 0;
	if (r < 0)
		return err_set(err, r, "cutting the bounding set: %s", strerror(-r));
	if ((r = caps_settle(want & c.prm, err)) < 0)
		return r;
	*missing = want & ~c.prm;
	return 0;
}

/* ---- becoming a user ---- */

static int user_lookup(const char *what, const char *user, uid_t *uid, gid_t *gid, char **name, char **err)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(user, &end, 10);
	bool numeric = user[0] >= '0' && user[0] <= '9' && !*end && !errno && n < UINT_MAX;
	errno = 0;
	struct passwd *pw = numeric ? getpwuid((uid_t)n) : getpwnam(user);
	/* Not found is NULL with errno 0, ENOENT or ESRCH, by the NSS module. */
	if (!pw && (errno == 0 || errno == ENOENT || errno == ESRCH))
		return err_set(err, -ENOENT, "%s %s: no such user", what, user);
	if (!pw)
		return err_set(err, -errno, "%s %s: %s", what, user, strerror(errno));
	if (pw->pw_uid == 0)
		return err_set(err, -EINVAL,
			       "%s %s: that is root; name an unprivileged user (this daemon needs no "
			       "privilege)",
			       what, user);
	/* Root's group would keep what root's group may write. */
	if (pw->pw_gid == 0)
		return err_set(err, -EINVAL,
			       "%s %s: its group is root's (gid 0); name a user of another group", what,
			       user);
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	*name = strdup(pw->pw_name);
	return *name ? 0 : err_set(err, -ENOMEM, "out of memory");
}

/* The directory a path's entry is in ("." for a bare name). malloc()ed. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

/* The directory a PRIVS_OWN_DIR or ipc endpoint names, or NULL (none, or
 * out of memory: the check then has nothing to say). malloc()ed. */
static char *own_dir(const struct privs_path *p)
{
	if (!p->path)
		return NULL;
	if (p->need == PRIVS_OWN_DIR)
		return strdup(p->path);
	if (p->need != PRIVS_IPC_ENDPOINT || strncmp(p->path, "ipc://", 6) != 0 || p->path[6] == '@' ||
	    !p->path[6])
		return NULL;
	return dir_of(p->path + 6);
}

/* As root: a missing directory made 0700 and chowned to the user, by fd,
 * so nothing renamed in between is chowned instead. */
static int make_own_dir(const char *what, const char *dir, uid_t uid, gid_t gid, char **err)
{
	if (mkdir(dir, 0700) < 0)
		return errno == EEXIST
			   ? 0
			   : err_set(err, -errno, "%s: creating %s: %s", what, dir, strerror(errno));
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int r = fd < 0 || fchown(fd, uid, gid) < 0 ? -errno : 0;
	if (fd >= 0)
		close(fd);
	return r < 0 ? err_set(err, r, "%s: giving %s to uid %u: %s", what, dir, (unsigned)uid, strerror(-r))
		     : 0;
}

/* "owned by root:root, mode 0700" for messages. */
static void describe(const struct stat *st, char *buf, size_t size)
{
	struct passwd *pw = getpwuid(st->st_uid);
	struct group *gr = getgrgid(st->st_gid);
	char u[32], g[32];
	snprintf(u, sizeof(u), "%u", (unsigned)st->st_uid);
	snprintf(g, sizeof(g), "%u", (unsigned)st->st_gid);
	snprintf(buf, size, "owned by %s:%s, mode %04o", pw ? pw->pw_name : u, gr ? gr->gr_name : g,
		 (unsigned)(st->st_mode & 07777));
}

struct who {
	const char *name;
	uid_t uid;
};

/* The first directory on the way to path the user may not pass through. */
static int check_way(const char *what, const char *path, const struct who *w, char **err)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return 0;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		struct stat st;
		if (access(buf, X_OK) < 0 && errno == EACCES && stat(buf, &st) == 0) {
			char d[128];
			describe(&st, d, sizeof(d));
			return err_set(
			    err, -EACCES,
			    "%s %s: user %s (uid %u) cannot reach it: %s is %s; let the user through "
			    "(chmod o+x, or a group) or move it",
			    what, path, w->name, (unsigned)w->uid, buf, d);
		}
		*p = '/';
	}
	return 0;
}

/* path against mode (R_OK, W_OK, X_OK) as the user now is; inside names
 * the entry of a directory being checked. */
static int check_access(const char *what, const char *dir, const char *inside, int mode, const char *fix,
			const struct who *w, char **err)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s%s%s", dir, inside ? "/" : "", inside ? inside : "") >=
	    (int)sizeof(path))
		return err_set(err, -ENAMETOOLONG, "%s %s: path too long", what, dir);
	if (access(path, mode) == 0)
		return 0;
	int e = errno;
	struct stat st;
	if (e == ENOENT)
		return 0; /* the daemon says so itself, where it opens it */
	if (e != EACCES || stat(path, &st) < 0)
		return check_way(what, path, w, err)
			   ?: err_set(err, -e, "%s %s: %s", what, path, strerror(e));
	char d[128];
	describe(&st, d, sizeof(d));
	const char *verb = mode & W_OK ? (S_ISDIR(st.st_mode) ? "write in" : "write") : "read";
	return err_set(err, -EACCES, "%s %s%s%s: user %s (uid %u) cannot %s it: %s; %s", what, dir,
		       inside ? ": " : "", inside ? inside : "", w->name, (unsigned)w->uid, verb, d, fix);
}

/* A directory and the regular files directly in it. */
static int check_dir(const char *what, const char *dir, bool write, const struct who *w, char **err)
{
	char fix[PATH_MAX + 64];
	snprintf(fix, sizeof(fix), "chown -R %s %s", w->name, dir);
	int r = check_access(what, dir, NULL, R_OK | X_OK | (write ? W_OK : 0), fix, w, err);
	DIR *d = r == 0 ? opendir(dir) : NULL;
	if (!d)
		return r;
	struct dirent *e;
	while (r == 0 && (e = readdir(d))) {
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		r = check_access(what, dir, e->d_name, R_OK | (write ? W_OK : 0), fix, w, err);
	}
	closedir(d);
	return r;
}

static int check_path(const struct privs_path *p, const struct who *w, char **err)
{
	char *dir = own_dir(p);
	int r = 0;
	char fix[PATH_MAX + 64];
	if (dir && p->need == PRIVS_IPC_ENDPOINT) { /* its files are sockets: the directory is all */
		snprintf(fix, sizeof(fix), "chown %s %s", w->name, dir);
		r = check_access(p->what, dir, NULL, R_OK | W_OK | X_OK, fix, w, err);
	} else if (dir)
		r = check_dir(p->what, dir, true, w, err);
	else if (p->path && p->need == PRIVS_READ_DIR)
		r = check_dir(p->what, p->path, false, w, err);
	else if (p->path && p->need == PRIVS_READ_FILE)
		r = check_access(p->what, p->path, NULL, R_OK, "make it readable to that user", w, err);
	free(dir);
	return r;
}

static int become(const char *name, uid_t uid, gid_t gid, char **err)
{
	/* The bounding set goes while CAP_SETPCAP is still there (if root
	 * was started without it, no new privileges still holds). */
	struct caps c;
	int r = caps_get(&c);
	if (r == 0 && (c.eff >> CAP_SETPCAP) & 1)
		r = bounding_cut(0);
	if (r < 0)
		return err_set(err, r, "cutting the bounding set: %s", strerror(-r));
	if (initgroups(name, gid) < 0)
		return err_set(err, -errno, "--user %s: initgroups: %s", name, strerror(errno));
	if (setresgid(gid, gid, gid) < 0)
		return err_set(err, -errno, "--user %s: setresgid %u: %s", name, (unsigned)gid,
			       strerror(errno));
	if (setresuid(uid, uid, uid) < 0)
		return err_set(err, -errno, "--user %s: setresuid %u: %s", name, (unsigned)uid,
			       strerror(errno));
	if ((r = caps_settle(0, err)) < 0)
		return r;
	/* The way back must be shut; if it is not, nothing here holds. */
	if (setuid(0) == 0 || setgid(0) == 0)
		abort();
	return 0;
}

int privs_become_user(const char *user, const struct privs_path *paths, size_t n_paths, char **err)
{
	*err = NULL;
	int r = single_threaded(err);
	if (r < 0)
		return r;
	if (!user) {
		uint64_t missing;
		if ((r = privs_keep_caps(NULL, 0, &missing, err)) < 0)
			return r;
		return geteuid() == 0 ? 1 : 0;
	}
	uid_t uid = 0;
	gid_t gid = 0;
	char *name = NULL;
	if ((r = user_lookup("--user", user, &uid, &gid, &name, err)) < 0)
		return r;
	uid_t ruid, euid, suid;
	if (getresuid(&ruid, &euid, &suid) < 0) {
		r = err_set(err, -errno, "getresuid: %s", strerror(errno));
		goto out;
	}
	if (euid == 0) {
		for (size_t i = 0; i < n_paths && r == 0; i++) {
			char *dir = own_dir(&paths[i]);
			if (dir)
				r = make_own_dir(paths[i].what, dir, uid, gid, err);
			free(dir);
		}
		if (r == 0)
			r = become(name, uid, gid, err);
	} else if (ruid == uid && euid == uid && suid == uid) {
		uint64_t missing;
		r = privs_keep_caps(NULL, 0, &missing, err);
	} else {
		r = err_set(err, -EPERM, "--user %s: only root can become another user (this is uid %u)",
			    user, (unsigned)euid);
	}
	struct who w = {name, uid};
	for (size_t i = 0; i < n_paths && r == 0; i++)
		r = check_path(&paths[i], &w, err);
out:
	free(name);
	return r;
}

int privs_lookup_user(const char *what, const char *user, uid_t *uid, gid_t *gid, char **err)
{
	char *name = NULL;
	*err = NULL;
	int r = user_lookup(what, user, uid, gid, &name, err);
	free(name);
	return r;
}

/* ---- giving files to a user ---- */

/* fd (an O_PATH descriptor of path, for messages) to uid:gid when it is
 * not theirs already; a file with another link somewhere else is not
 * given away. By descriptor, as CAP_CHOWN allows, with no need to read. */
static int give_fd(int fd, const char *path, uid_t uid, gid_t gid, char **err)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return err_set(err, -errno, "%s: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
		return err_set(err, -EINVAL, "%s: neither a directory nor a regular file", path);
	if (S_ISREG(st.st_mode) && st.st_nlink != 1)
		return err_set(err, -EMLINK, "%s: has %ju links; not given away (remove the others)", path,
			       (uintmax_t)st.st_nlink);
	if (st.st_uid == uid && st.st_gid == gid)
		return 0;
	if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH) < 0)
		return err_set(err, -errno, "%s: giving it to uid %u: %s", path, (unsigned)uid,
			       strerror(errno));
	return 0;
}

static int open_path(const char *path, bool dir, char **err)
{
	int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC | (dir ? O_DIRECTORY : 0));
	return fd < 0 ? err_set(err, -errno, "opening %s: %s", path, strerror(errno)) : fd;
}

/* The regular files directly in the directory path. */
static int give_files(const char *path, uid_t uid, gid_t gid, char **err)
{
	DIR *d = opendir(path);
	if (!d)
		return err_set(err, -errno, "reading %s: %s", path, strerror(errno));
	int r = 0;
	struct dirent *e;
	while (r == 0 && (e = readdir(d))) {
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		char sub[PATH_MAX];
		snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
		int f = openat(dirfd(d), e->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (f < 0) {
			r = err_set(err, -errno, "opening %s: %s", sub, strerror(errno));
			break;
		}
		r = give_fd(f, sub, uid, gid, err);
		close(f);
	}
	closedir(d);
	return r;
}

int privs_give_path(const char *path, bool dir, uid_t uid, gid_t gid, char **err)
{
	*err = NULL;
	if (dir) {
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return err_set(err, -errno, "creating %s: %s", path, strerror(errno));
	} else {
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			return err_set(err, -errno, "creating %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
	}
	int fd = open_path(path, dir, err);
	if (fd < 0)
		return fd;
	struct stat st;
	int r = fstat(fd, &st) < 0 ? err_set(err, -errno, "%s: %s", path, strerror(errno)) : 0;
	if (r == 0 && dir && (st.st_uid != uid || st.st_gid != gid)) {
		/* Ours first, so that we may read it (no CAP_DAC_READ_SEARCH
		 * needed), then its files, then the directory. A directory the
		 * user owns already holds only what the user made. */
		r = give_fd(fd, path, geteuid(), getegid(), err);
		if (r == 0)
			r = give_files(path, uid, gid, err);
	}
	if (r == 0)
		r = give_fd(fd, path, uid, gid, err);
	close(fd);
	return r;
}
