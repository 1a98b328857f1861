/* Runner for the harness in test.h. */
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
