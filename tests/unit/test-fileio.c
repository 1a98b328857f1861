/* The one capped file reader (fileio.h) and the library's readers built on
 * it: a regular file is read whole; a FIFO, a device or a directory is
 * refused at once (a blocking open would hang the test: alarm() fails it
 * instead); a file past the cap is refused unread; an empty file is an
 * empty text. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bulkhead/fileio.h"
#include "bulkhead/inventory.h"
#include "bulkhead/keys.h"
#include "bulkhead/policy.h"
#include "test.h"

static char dir[] = "/tmp/test-fileio.XXXXXX";

static const char *in_dir(const char *name)
{
	static char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

static void write_file(const char *name, const char *text, size_t len)
{
	FILE *f = fopen(in_dir(name), "w");
	CHECK(f != NULL);
	if (f) {
		CHECK(fwrite(text, 1, len, f) == len);
		fclose(f);
	}
}

/* A file of size bytes, all holes: nothing to read, a size to refuse. */
static void sparse_file(const char *name, off_t size)
{
	int fd = open(in_dir(name), O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && ftruncate(fd, size) == 0);
	if (fd >= 0)
		close(fd);
}

/* fileio_read's result; on failure, that it left the out-parameters alone. */
static int try_read(const char *path, size_t max, char **text, size_t *len)
{
	char *t = (char *)"untouched";
	size_t n = 12345;
	alarm(10);
	int r = fileio_read(path, max, &t, &n);
	alarm(0);
	if (r < 0)
		CHECK(strcmp(t, "untouched") == 0 && n == 12345);
	*text = r < 0 ? NULL : t;
	*len = r < 0 ? 0 : n;
	return r;
}

TEST(a_regular_file_is_read_whole_and_nul_terminated)
{
	char *t;
	size_t n;
	write_file("doc", "{\"a\": 1}\n", 9);
	CHECK(try_read(in_dir("doc"), 1024, &t, &n) == 0);
	CHECK(n == 9 && t && strcmp(t, "{\"a\": 1}\n") == 0);
	free(t);
}

TEST(an_empty_file_is_an_empty_text)
{
	char *t;
	size_t n;
	write_file("empty", "", 0);
	CHECK(try_read(in_dir("empty"), 1024, &t, &n) == 0);
	CHECK(n == 0 && t && t[0] == '\0');
	free(t);
}

TEST(the_cap_is_inclusive_and_one_byte_more_is_efbig)
{
	char *t;
	size_t n;
	write_file("eight", "12345678", 8);
	CHECK(try_read(in_dir("eight"), 8, &t, &n) == 0 && n == 8);
	free(t);
	CHECK(try_read(in_dir("eight"), 7, &t, &n) == -EFBIG);
}

TEST(a_huge_sparse_file_is_refused_unread)
{
	/* 1 TiB of holes: refused on its size, before any byte is read. */
	char *t;
	size_t n;
	sparse_file("sparse", (off_t)1 << 40);
	CHECK(try_read(in_dir("sparse"), 64u << 20, &t, &n) == -EFBIG);
}

TEST(a_fifo_is_refused_without_blocking)
{
	char *t;
	size_t n;
	CHECK(mkfifo(in_dir("fifo"), 0600) == 0);
	CHECK(try_read(in_dir("fifo"), 1024, &t, &n) == -EINVAL);
	/* also behind a symbolic link */
	char fifo[256];
	snprintf(fifo, sizeof(fifo), "%s", in_dir("fifo"));
	CHECK(symlink(fifo, in_dir("link")) == 0);
	CHECK(try_read(in_dir("link"), 1024, &t, &n) == -EINVAL);
	CHECK_STR(fileio_strerror(-EINVAL), "not a regular file (a FIFO, a device or a socket)");
}

TEST(devices_and_directories_are_refused)
{
	char *t;
	size_t n;
	CHECK(try_read("/dev/zero", 1024, &t, &n) == -EINVAL); /* would never end */
	CHECK(try_read("/dev/null", 1024, &t, &n) == -EINVAL);
	CHECK(try_read(dir, 1024, &t, &n) == -EISDIR);
	CHECK(try_read(in_dir("missing"), 1024, &t, &n) == -ENOENT);
}

TEST(the_size_fstat_gives_is_only_a_hint)
{
	/* /proc files say 0 bytes and hold more. */
	char *t;
	size_t n;
	CHECK(try_read("/proc/self/status", 1 << 20, &t, &n) == 0);
	CHECK(n > 0 && t && strncmp(t, "Name:", 5) == 0 && strlen(t) == n);
	free(t);
	CHECK(try_read("/proc/self/status", 16, &t, &n) == -EFBIG);
}

/* ---- the library's readers ---- */

/* The one message diag holds after a failed read of path. */
static bool diag_says(struct diag *d, const char *want)
{
	bool ok = d->n == 1 && strcmp(d->v[0].message, want) == 0;
	if (!ok)
		fprintf(stderr, "  diag: %s\n", d->n ? d->v[0].message : "(none)");
	diag_release(d);
	return ok;
}

TEST(policy_and_inventory_files_refuse_a_fifo)
{
	struct diag d;
	diag_init(&d, "fifo");
	alarm(10);
	CHECK(policy_parse_file(in_dir("fifo"), &d) == NULL);
	CHECK(diag_says(&d, "cannot read: not a regular file (a FIFO, a device or a socket)"));
	struct inventory *inv = inventory_new();
	diag_init(&d, "fifo");
	CHECK(inventory_load_file(inv, in_dir("fifo"), "n1", 0, &d) == -EINVAL);
	CHECK(diag_says(&d, "cannot read: not a regular file (a FIFO, a device or a socket)"));
	alarm(0);
	inventory_free(inv);
}

TEST(an_inventory_is_at_most_64_mib)
{
	sparse_file("big-inventory", INVENTORY_MAX_BYTES + 1);
	struct inventory *inv = inventory_new();
	struct diag d;
	diag_init(&d, "big-inventory");
	CHECK(inventory_load_file(inv, in_dir("big-inventory"), "n1", 0, &d) == -EINVAL);
	CHECK(diag_says(&d, "larger than 67108864 bytes (64 MiB), the most an inventory may be"));
	inventory_free(inv);
}

TEST(policy_file_past_64_mib_and_directory)
{
	sparse_file("big-policy", POLICY_MAX_BYTES + 1);
	struct diag d;
	diag_init(&d, "big-policy");
	CHECK(policy_parse_file(in_dir("big-policy"), &d) == NULL);
	CHECK(diag_says(&d, "larger than 67108864 bytes (64 MiB), the most a policy document may be"));
	diag_init(&d, "dir");
	CHECK(policy_parse_file(dir, &d) == NULL);
	CHECK(diag_says(&d, "cannot read: Is a directory"));
	diag_init(&d, "missing");
	CHECK(policy_parse_file(in_dir("missing"), &d) == NULL);
	CHECK(diag_says(&d, "cannot open: No such file or directory"));
}

TEST(key_files_refuse_a_fifo_and_more_than_a_key)
{
	char key[KEY_Z85_LEN + 1], *err = NULL;
	alarm(10);
	CHECK(keys_read(in_dir("fifo"), key, &err) == -EINVAL);
	alarm(0);
	CHECK(err && strstr(err, "fifo: not a regular file"));
	free(err);
	char long_key[200];
	memset(long_key, 'a', sizeof(long_key));
	write_file("long.key", long_key, sizeof(long_key));
	CHECK(keys_read(in_dir("long.key"), key, &err) == -EINVAL);
	CHECK(err && strstr(err, "long.key: not a CURVE key: want 40 Z85 characters, found 127 or more"));
	free(err);
	write_file("empty.key", "", 0);
	CHECK(keys_read(in_dir("empty.key"), key, &err) == -EINVAL);
	CHECK(err && strstr(err, "empty.key: not a CURVE key: want 40 Z85 characters, found 0"));
	free(err);
	write_file("good.key", "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID\n", 41);
	CHECK(keys_read(in_dir("good.key"), key, &err) == 0 &&
	      strcmp(key, "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID") == 0);
	free(err);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	int r = test_main();
	const char *names[] = {"doc",		"empty",      "eight",	  "sparse",    "fifo",	  "link",
			       "big-inventory", "big-policy", "long.key", "empty.key", "good.key"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlink(in_dir(names[i]));
	rmdir(dir);
	return r;
}
