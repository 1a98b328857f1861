/* lib/ratelimit.c: a burst of lines per interval, then silence, and the
 * next line written says how many were left out. */
#include "bulkhead/ratelimit.h"
#include "test.h"

TEST(a_burst_per_interval_then_the_count_of_what_was_left_out)
{
	struct ratelimit r = RATELIMIT_INIT(1000, 3);
	uint64_t missed = 99;
	int passed = 0;
	for (int i = 0; i < 100; i++)
		passed += ratelimit_pass(&r, 5000 + i, &missed);
	CHECK(passed == 3);
	CHECK(missed == 0); /* the three went first */
	CHECK(!ratelimit_pass(&r, 5999, &missed));
	CHECK(ratelimit_pass(&r, 6000, &missed)); /* the next interval */
	CHECK(missed == 98);
	CHECK(ratelimit_pass(&r, 6001, &missed));
	CHECK(missed == 0);
}

TEST(a_clock_that_went_back_starts_a_new_interval)
{
	struct ratelimit r = RATELIMIT_INIT(1000, 1);
	uint64_t missed;
	CHECK(ratelimit_pass(&r, 5000, &missed));
	CHECK(!ratelimit_pass(&r, 5500, &missed));
	CHECK(ratelimit_pass(&r, 100, &missed));
	CHECK(missed == 1);
}

int main(void)
{
	return test_main();
}
