/* Runner for the harness in test.h. */
#include <dirent.h>
#include <limits.h>
#include <unistd.h>

#include "test.h"

struct test_case test_cases[512];
size_t test_n_cases;
int test_failures_in_case;
unsigned test_passed, test_failed;

void test_report(const char *name, bool ok)
{
	if (ok)
		test_passed++;
	else
		test_failed++;
	printf("%s %u - %s\n", ok ? "ok" : "not ok", test_passed + test_failed, name);
	fflush(stdout);
}

void test_remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		char path[PATH_MAX];
		for (struct dirent *e; (e = readdir(d));) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(dir);
}

int test_main(void)
{
	for (size_t i = 0; i < test_n_cases; i++) {
		test_failures_in_case = 0;
		test_cases[i].fn();
		test_report(test_cases[i].name, test_failures_in_case == 0);
	}
	printf("%u passed, %u failed\n", test_passed, test_failed);
	return test_failed ? 1 : 0;
}
