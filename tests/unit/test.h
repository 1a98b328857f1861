/* Minimal unit-test harness: TEST(name) registers a case; CHECK records a
 * failure and carries on. Prints "ok N - name" / "not ok N - name" and ends
 * with "N passed, N failed"; exits 1 on any failure. */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct test_case {
	const char *name;
	void (*fn)(void);
};

extern struct test_case test_cases[512];
extern size_t test_n_cases;
extern int test_failures_in_case;
extern unsigned test_passed, test_failed;

#define TEST(name)                                                                                           \
	static void test_##name(void);                                                                       \
	__attribute__((constructor)) static void test_register_##name(void)                                  \
	{                                                                                                    \
		test_cases[test_n_cases++] = (struct test_case){#name, test_##name};                         \
	}                                                                                                    \
	static void test_##name(void)

#define CHECK(cond)                                                                                          \
	do {                                                                                                 \
		if (!(cond)) {                                                                               \
			fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);           \
			test_failures_in_case++;                                                             \
		}                                                                                            \
	} while (0)

#define CHECK_STR(a, b)                                                                                      \
	do {                                                                                                 \
		const char *a_ = (a), *b_ = (b);                                                             \
		if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                     \
			fprintf(stderr, "  %s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__,                   \
				a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                     \
			test_failures_in_case++;                                                             \
		}                                                                                            \
	} while (0)

/* Reports one named result outside TEST cases (data-driven tests). */
void test_report(const char *name, bool ok);
/* Removes a scratch directory of the test's and the files in it (a store's
 * database, its -wal and -shm). */
void test_remove_dir(const char *dir);
/* Runs every registered case, then returns the exit status. */
int test_main(void);
