/* Directories that only this user and root control (see pathtrust.h). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bulkhead/pathtrust.h"

/* One directory, by what it resolves to. */
static int trust_one(const char *path, char **err)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return err_set(err, -errno, "%s: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return err_set(err, -ENOTDIR, "%s: not a directory", path);
	uid_t me = geteuid();
	if (st.st_uid != 0 && st.st_uid != me)
		return err_set(
		    err, -EPERM,
		    "%s: owned by uid %u, not by root or this user (uid %u): that user could replace what is "
		    "in it",
		    path, (unsigned)st.st_uid, (unsigned)me);
	if ((st.st_mode & 022) && !(st.st_mode & S_ISVTX))
		return err_set(
		    err, -EPERM,
		    "%s: writable by %s (mode %04o) and not sticky: they could replace what is in it", path,
		    st.st_mode & 002 ? "everyone" : "its group", (unsigned)(st.st_mode & 07777));
	return 0;
}

/* path (resolved) and each directory above it. */
static int trust_resolved(const char *path, char **err)
{
	char real[PATH_MAX];
	if (!realpath(path, real))
		return err_set(err, -errno, "%s: %s", path, strerror(errno));
	int r = trust_one("/", err);
	for (char *p = real + 1; r == 0 && real[1]; p++) {
		if (*p != '/' && *p)
			continue;
		char c = *p;
		*p = '\0';
		r = trust_one(real, err);
		*p = c;
		if (!c)
			break;
	}
	return r;
}

int pathtrust_dir(const char *dir, char **err)
{
	*err = NULL;
	/* Each prefix as given: a symbolic link on the way is only as safe as
	 * the directories that hold it and those its target lies in. */
	char given[PATH_MAX];
	if (dir[0] == '/') {
		if (snprintf(given, sizeof(given), "%s", dir) >= (int)sizeof(given))
			return err_set(err, -ENAMETOOLONG, "%s: path too long", dir);
	} else {
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof(cwd)))
			return err_set(err, -errno, "the working directory: %s", strerror(errno));
		if (snprintf(given, sizeof(given), "%s/%s", cwd, dir) >= (int)sizeof(given))
			return err_set(err, -ENAMETOOLONG, "%s: path too long", dir);
	}
	for (char *p = given + 1;; p++) {
		if (*p != '/' && *p)
			continue;
		char c = *p;
		*p = '\0';
		int r = trust_resolved(given, err);
		*p = c;
		if (r < 0 || !c)
			return r;
	}
}
