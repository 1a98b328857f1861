/* CURVE key files (see keys.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "bulkhead/keys.h"

static int fail(char **err, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char **err, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(err, fmt, ap) < 0)
		*err = NULL;
	va_end(ap);
	return r;
}

int keys_read(const char *path, char out[KEY_Z85_LEN + 1], char **err)
{
	*err = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, -errno, "%s: %s", path, strerror(errno));
	char buf[128];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	int saved = errno;
	close(fd);
	if (n < 0)
		return fail(err, -saved, "%s: %s", path, strerror(saved));
	buf[n] = '\0';
	size_t len = (size_t)n;
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		buf[--len] = '\0';
	if (len != KEY_Z85_LEN)
		return fail(err, -EINVAL, "%s: not a CURVE key: want %d Z85 characters, found %zu%s", path,
			    KEY_Z85_LEN, len, n == (ssize_t)sizeof(buf) - 1 ? " or more" : "");
	uint8_t raw[32];
	if (!zmq_z85_decode(raw, buf))
		return fail(err, -EINVAL, "%s: not a CURVE key: characters outside Z85", path);
	memcpy(out, buf, KEY_Z85_LEN + 1);
	return 0;
}

int keys_read_pair(const char *dir, char pub[KEY_Z85_LEN + 1], char sec[KEY_Z85_LEN + 1], char **err)
{
	char path[4096];
	struct stat st;
	snprintf(path, sizeof(path), "%s/" KEY_SECRET_FILE, dir);
	if (stat(path, &st) == 0 && (st.st_mode & 077))
		return fail(err, -EPERM, "%s: the secret key is readable by others (mode %03o); chmod 600 it", path,
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

static int write_key(const char *path, const char *key, mode_t mode, bool force, char **err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL), mode);
	if (fd < 0)
		return fail(err, -errno, errno == EEXIST ? "%s: exists; --force replaces it" : "%s: %s", path,
			    strerror(errno));
	char line[KEY_Z85_LEN + 2];
	snprintf(line, sizeof(line), "%s\n", key);
	bool ok = fchmod(fd, mode) == 0 && write(fd, line, KEY_Z85_LEN + 1) == KEY_Z85_LEN + 1 && fsync(fd) == 0;
	int saved = errno;
	close(fd);
	return ok ? 0 : fail(err, -saved, "%s: %s", path, strerror(saved));
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
			return fail(err, -errno, "%s: %s", tmp, strerror(errno));
		*p = '/';
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return fail(err, -errno, "%s: %s", dir, strerror(errno));
	char pub[KEY_Z85_LEN + 1], sec[KEY_Z85_LEN + 1], path[4096];
	if (zmq_curve_keypair(pub, sec) < 0)
		return fail(err, -ENOTSUP, "this libzmq cannot make CURVE keys (built without CURVE?)");
	if (!force) {
		/* Refuse before writing either file: never half a pair. */
		for (int i = 0; i < 2; i++) {
			snprintf(path, sizeof(path), "%s/%s", dir, i ? KEY_SECRET_FILE : KEY_PUBLIC_FILE);
			if (access(path, F_OK) == 0)
				return fail(err, -EEXIST, "%s: exists; --force replaces it", path);
		}
	}
	snprintf(path, sizeof(path), "%s/" KEY_SECRET_FILE, dir);
	int r = write_key(path, sec, 0600, force, err);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/" KEY_PUBLIC_FILE, dir);
	r = write_key(path, pub, 0644, force, err);
	if (r < 0)
		return r;
	memcpy(pub_out, pub, sizeof(pub));
	return 0;
}
