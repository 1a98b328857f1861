/* CURVE key files (see keys.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "bulkhead/fileio.h"
#include "bulkhead/keys.h"
#include "bulkhead/pathtrust.h"

/* A key file holds one key and a line end; more is not a key file. */
#define KEY_FILE_MAX 127

int keys_read(const char *path, char out[KEY_Z85_LEN + 1], char **err)
{
	*err = NULL;
	char *text;
	size_t n;
	int r = fileio_read(path, KEY_FILE_MAX, &text, &n);
	if (r == -EFBIG)
		return err_set(err, -EINVAL, "%s: not a CURVE key: want %d Z85 characters, found %d or more",
			       path, KEY_Z85_LEN, KEY_FILE_MAX);
	if (r < 0)
		return err_set(err, r, "%s: %s", path, fileio_strerror(r));
	while (n && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ' || text[n - 1] == '\t'))
		text[--n] = '\0';
	uint8_t raw[32];
	if (n != KEY_Z85_LEN)
		r = err_set(err, -EINVAL, "%s: not a CURVE key: want %d Z85 characters, found %zu", path,
			    KEY_Z85_LEN, n);
	else if (!zmq_z85_decode(raw, text))
		r = err_set(err, -EINVAL, "%s: not a CURVE key: characters outside Z85", path);
	else
		memcpy(out, text, KEY_Z85_LEN + 1);
	free(text);
	return r;
}

int keys_read_pair(const char *dir, char pub[KEY_Z85_LEN + 1], char sec[KEY_Z85_LEN + 1], char **err)
{
	char path[4096];
	struct stat st;
	snprintf(path, sizeof(path), "%s/" KEY_SECRET_FILE, dir);
	if (stat(path, &st) == 0 && (st.st_mode & 077))
		return err_set(err, -EPERM,
			       "%s: the secret key is readable by others (mode %03o); chmod 600 it", path,
			       st.st_mode & 0777);
	char tmp[KEY_Z85_LEN + 1];
	int r = keys_read(path, tmp, err);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/" KEY_PUBLIC_FILE, dir);
	r = keys_read(path, pub, err);
	if (r < 0)
		return r;
	memcpy(sec, tmp, sizeof(tmp));
	return 0;
}

/* DIR/.NAME.XXXXXX holding key, mode; its path in tmp. Created with
 * O_EXCL, so nothing planted there is followed or reused. */
static int write_temp(const char *dir, const char *name, const char *key, mode_t mode, char tmp[4096],
		      char **err)
{
	snprintf(tmp, 4096, "%s/.%s.XXXXXX", dir, name);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return err_set(err, -errno, "%s: %s", tmp, strerror(errno));
	char line[KEY_Z85_LEN + 2];
	snprintf(line, sizeof(line), "%s\n", key);
	bool ok =
	    fchmod(fd, mode) == 0 && write(fd, line, KEY_Z85_LEN + 1) == KEY_Z85_LEN + 1 && fsync(fd) == 0;
	int saved = errno;
	close(fd);
	if (!ok) {
		unlink(tmp);
		return err_set(err, -saved, "%s: %s", tmp, strerror(saved));
	}
	return 0;
}

/* What --force may replace: nothing, or a regular file of this user's. A
 * symbolic link (or a file someone else owns) planted where a key goes is
 * refused, never written through. */
static int check_replaceable(const char *path, bool force, char **err)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : err_set(err, -errno, "%s: %s", path, strerror(errno));
	if (!force)
		return err_set(err, -EEXIST, "%s: exists; --force replaces it", path);
	if (S_ISLNK(st.st_mode))
		return err_set(
		    err, -ELOOP,
		    "%s: a symbolic link: refused (a key is never written through a link; remove it "
		    "if it is yours)",
		    path);
	if (!S_ISREG(st.st_mode))
		return err_set(err, -EPERM, "%s: not a regular file: refused", path);
	if (st.st_uid != geteuid())
		return err_set(err, -EPERM, "%s: owned by uid %u, not this user (uid %u): refused", path,
			       (unsigned)st.st_uid, (unsigned)geteuid());
	return 0;
}

int keys_write_pair(const char *dir, bool force, char pub_out[KEY_Z85_LEN + 1], char **err)
{
	*err = NULL;
	/* mkdir -p: parents 0755, the key directory itself 0700. */
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s", dir);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return err_set(err, -errno, "%s: %s", tmp, strerror(errno));
		*p = '/';
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return err_set(err, -errno, "%s: %s", dir, strerror(errno));
	/* Whoever else may write in the directory could swap the keys. */
	char *why = NULL;
	int r = pathtrust_dir(dir, &why);
	if (r < 0) {
		err_set(err, r, "%s; refused", why ? why : strerror(-r));
		free(why);
		return r;
	}
	char pub[KEY_Z85_LEN + 1], sec[KEY_Z85_LEN + 1];
	if (zmq_curve_keypair(pub, sec) < 0)
		return err_set(err, -ENOTSUP, "this libzmq cannot make CURVE keys (built without CURVE?)");
	static const char *const names[2] = {KEY_SECRET_FILE, KEY_PUBLIC_FILE};
	const char *keys[2] = {sec, pub};
	static const mode_t modes[2] = {0600, 0644};
	char path[2][4096], temp[2][4096];
	/* Refuse before writing either file: never half a pair. */
	for (int i = 0; i < 2; i++) {
		snprintf(path[i], sizeof(path[i]), "%s/%s", dir, names[i]);
		if ((r = check_replaceable(path[i], force, err)) < 0)
			return r;
	}
	/* Both written aside, then put in place by rename (which replaces a
	 * name, never writes through it) or, without --force, link (which
	 * fails if the name was taken since). */
	for (int i = 0; i < 2; i++) {
		if ((r = write_temp(dir, names[i], keys[i], modes[i], temp[i], err)) < 0) {
			if (i)
				unlink(temp[0]);
			return r;
		}
	}
	for (int i = 0; i < 2; i++) {
		r = force ? rename(temp[i], path[i]) : link(temp[i], path[i]);
		if (r < 0)
			r = err_set(err, -errno,
				    errno == EEXIST ? "%s: exists; --force replaces it" : "%s: %s", path[i],
				    strerror(errno));
		if (!force || r < 0)
			unlink(temp[i]);
		if (r < 0) {
			if (!i)
				unlink(temp[1]);
			else if (!force) /* never half a pair */
				unlink(path[0]);
			return r;
		}
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	memcpy(pub_out, pub, sizeof(pub));
	return 0;
}
