/* Addresses, CIDRs and interval lists. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "bulkhead/addr.h"
#include "bulkhead/arena.h"
#include "bulkhead/sha256.h"
#include "test.h"

static struct bh_addr A(const char *s) {
	struct bh_addr a;
	if (addr_parse(s, &a) < 0)
		abort();
	return a;
}

static void
format_list(const struct range_list *l, char *out, size_t size)
{
	out[0] = '\0';
	for (size_t i = 0; i < l->n; i++) {
		char buf[RANGE_STRLEN];
		range_format(&l->v[i], buf);
		snprintf(out + strlen(out), size - strlen(out), "%s%s", i ? "," : "", buf);
	}
}

TEST(addr_parse_accepts_v4_and_v6)
{
	struct bh_addr a;
	CHECK(addr_parse("198.18.0.1", &a) == 0 && a.family == AF_INET);
	CHECK(addr_parse("2001:db8::1", &a) == 0 && a.family == AF_INET6);
	CHECK(addr_parse("::", &a) == 0);
	CHECK(addr_parse("::ffff:198.18.0.1", &a) == 0 && a.family == AF_INET6);
}

TEST(addr_parse_rejects_junk)
{
	struct bh_addr a;
	const char *bad[] = {"",	 "198.18.0",	 "198.18.0.256", "198.018.0.1",
			     "1.2.3.4 ", "2001:db8:::1", "2001:db8::g",	 "0x1.2.3.4",
			     "web",	 "198.18.0.1/32"};
	for (size_t i = 0; i < BH_ARRAY_SIZE(bad); i++)
		CHECK(addr_parse(bad[i], &a) == -EINVAL);
}

TEST(cidr_parse_prefixes_and_host_bits)
{
	struct bh_addr net;
	unsigned plen;
	char buf[ADDR_STRLEN];
	CHECK(cidr_parse("198.18.0.0/15", &net, &plen) == 0 && plen == 15);
	CHECK(cidr_parse("198.18.0.7", &net, &plen) == 0 && plen == 32);
	CHECK(cidr_parse("2001:db8::/32", &net, &plen) == 0 && plen == 32);
	CHECK(cidr_parse("2001:db8::1", &net, &plen) == 0 && plen == 128);
	CHECK(cidr_parse("0.0.0.0/0", &net, &plen) == 0 && plen == 0);
	CHECK(cidr_parse("::/0", &net, &plen) == 0 && plen == 0);
	/* Host bits set: an error, and the cleared network comes back for
	 * the "did you mean" message. */
	CHECK(cidr_parse("198.19.1.2/15", &net, &plen) == -EDOM);
	addr_format(&net, buf);
	CHECK_STR(buf, "198.18.0.0");
	CHECK(cidr_parse("2001:db8::1/64", &net, &plen) == -EDOM);
	addr_format(&net, buf);
	CHECK_STR(buf, "2001:db8::");
}

TEST(cidr_parse_rejects_bad_prefixes)
{
	struct bh_addr net;
	unsigned plen;
	const char *bad[] = {"198.18.0.0/33",  "198.18.0.0/",	  "198.18.0.0/-1",
			     "198.18.0.0/015", "2001:db8::/129",  "/24",
			     "198.18.0.0/1a",  "198.18.0.0/24/1", "10.0.0.0 /8"};
	for (size_t i = 0; i < BH_ARRAY_SIZE(bad); i++)
		CHECK(cidr_parse(bad[i], &net, &plen) == -EINVAL);
}

TEST(cidr_range_edges)
{
	struct bh_addr net;
	unsigned plen;
	struct addr_range r;
	char buf[RANGE_STRLEN];
	CHECK(cidr_parse("203.0.113.0/24", &net, &plen) == 0);
	cidr_range(&net, plen, &r);
	range_format(&r, buf);
	CHECK_STR(buf, "203.0.113.0-203.0.113.255");
	CHECK(cidr_parse("0.0.0.0/0", &net, &plen) == 0);
	cidr_range(&net, plen, &r);
	range_format(&r, buf);
	CHECK_STR(buf, "0.0.0.0-255.255.255.255");
	CHECK(cidr_parse("2001:db8::/127", &net, &plen) == 0);
	cidr_range(&net, plen, &r);
	range_format(&r, buf);
	CHECK_STR(buf, "2001:db8::-2001:db8::1");
}

TEST(range_list_subtract_splits_and_trims)
{
	struct range_list l;
	struct addr_range r = {A("203.0.113.0"), A("203.0.113.255")}, cut;
	char out[512];
	range_list_init(&l, NULL);
	CHECK(range_list_add(&l, &r) == 0);
	cut = (struct addr_range){A("203.0.113.9"), A("203.0.113.9")};
	CHECK(range_list_subtract(&l, &cut) == 0);
	format_list(&l, out, sizeof(out));
	CHECK_STR(out, "203.0.113.0-203.0.113.8,203.0.113.10-203.0.113.255");
	/* Cutting the low edge and the high edge. */
	cut = (struct addr_range){A("203.0.113.0"), A("203.0.113.3")};
	CHECK(range_list_subtract(&l, &cut) == 0);
	cut = (struct addr_range){A("203.0.113.128"), A("203.0.113.255")};
	CHECK(range_list_subtract(&l, &cut) == 0);
	format_list(&l, out, sizeof(out));
	CHECK_STR(out, "203.0.113.4-203.0.113.8,203.0.113.10-203.0.113.127");
	/* Another family is untouched; cutting everything empties it. */
	cut = (struct addr_range){A("2001:db8::"), A("2001:db8::ffff")};
	CHECK(range_list_subtract(&l, &cut) == 0 && l.n == 2);
	cut = (struct addr_range){A("0.0.0.0"), A("255.255.255.255")};
	CHECK(range_list_subtract(&l, &cut) == 0 && l.n == 0);
	range_list_release(&l);
}

TEST(range_list_subtract_at_address_space_ends)
{
	struct range_list l;
	struct addr_range all = {A("::"), A("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}, cut;
	char out[512];
	range_list_init(&l, NULL);
	CHECK(range_list_add(&l, &all) == 0);
	cut = (struct addr_range){A("::"), A("::")};
	CHECK(range_list_subtract(&l, &cut) == 0);
	cut = (struct addr_range){A("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
				  A("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")};
	CHECK(range_list_subtract(&l, &cut) == 0);
	format_list(&l, out, sizeof(out));
	CHECK_STR(out, "::1-ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
	range_list_release(&l);
}

/* ---- range_list_subtract_list against a naive reference ----
 *
 * The universe: four blocks of 256 addresses, at the bottom and the top of
 * each family's space (where a + 1 and a - 1 run out). A set of addresses
 * is a bitmap over it; subtraction is bit by bit, so it cannot share a bug
 * with the sweep. */

#define U_BLOCK 256
#define U_SIZE	(4 * U_BLOCK)

static struct bh_addr u_addr(unsigned i)
{
	struct bh_addr a = {.family = i < 2 * U_BLOCK ? AF_INET : AF_INET6};
	unsigned len = a.family == AF_INET ? 4 : 16, k = i % U_BLOCK;
	bool top = (i / U_BLOCK) % 2;
	for (unsigned b = 0; top && b < len; b++)
		a.bytes[b] = 0xff;
	a.bytes[len - 1] = top ? (uint8_t)(0xff - (U_BLOCK - 1) + k) : (uint8_t)k;
	return a;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static unsigned rng(unsigned n) /* xorshift64*: 0..n-1, the same every run */
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (unsigned)((rng_state * 2685821657736338717u) >> 33) % n;
}

/* Random ranges inside random blocks, added to l and marked in bits. */
static void random_ranges(struct range_list *l, bool *bits, unsigned count, unsigned max_len)
{
	for (unsigned i = 0; i < count; i++) {
		unsigned block = rng(4), lo = rng(U_BLOCK), len = 1 + rng(max_len);
		unsigned hi = lo + len - 1 < U_BLOCK ? lo + len - 1 : U_BLOCK - 1;
		struct addr_range r = {u_addr(block * U_BLOCK + lo), u_addr(block * U_BLOCK + hi)};
		if (range_list_add(l, &r) < 0)
			abort();
		for (unsigned k = lo; k <= hi; k++)
			bits[block * U_BLOCK + k] = true;
	}
}

/* Whether l is normalized and holds exactly the addresses of bits. */
static bool list_is(const struct range_list *l, const bool *bits)
{
	for (size_t i = 0; i < l->n; i++) {
		struct addr_range r = l->v[i];
		if (r.lo.family != r.hi.family || addr_cmp(&r.lo, &r.hi) > 0)
			return false;
		if (i && addr_cmp(&l->v[i - 1].hi, &r.lo) >= 0)
			return false; /* unsorted or overlapping */
	}
	for (unsigned i = 0; i < U_SIZE; i++) {
		struct bh_addr a = u_addr(i);
		if (range_list_contains(l, &a) != bits[i])
			return false;
		/* Normalized: neighbours inside the universe are never split. */
		if (i % U_BLOCK && bits[i] && bits[i - 1]) {
			struct bh_addr b = u_addr(i - 1);
			if (range_list_find(l, &a) != range_list_find(l, &b))
				return false;
		}
	}
	return true;
}

TEST(range_list_subtract_list_matches_a_naive_reference)
{
	unsigned bad = 0;
	for (unsigned round = 0; round < 3000; round++) {
		bool base[U_SIZE] = {0}, cut[U_SIZE] = {0}, want[U_SIZE];
		struct range_list l, cuts;
		range_list_init(&l, NULL);
		range_list_init(&cuts, NULL);
		/* Few long ranges to many short ones; cuts overlapping each
		 * other, the edges of the list's ranges, or nothing. */
		unsigned max_len = 1 + rng(round % 2 ? 8 : 200);
		random_ranges(&l, base, rng(12), max_len);
		random_ranges(&cuts, cut, rng(40), 1 + rng(max_len + 10));
		range_list_normalize(&l);
		for (unsigned i = 0; i < U_SIZE; i++)
			want[i] = base[i] && !cut[i];
		if (range_list_subtract_list(&l, &cuts) < 0 || !list_is(&l, want))
			bad++;
		range_list_release(&l);
		range_list_release(&cuts);
	}
	CHECK(bad == 0);
}

TEST(range_list_subtract_list_in_an_arena)
{
	struct arena *a = arena_new();
	struct range_list l, cuts;
	struct addr_range all = {A("0.0.0.0"), A("255.255.255.255")};
	char out[512];
	range_list_init(&l, a);
	range_list_init(&cuts, NULL);
	CHECK(range_list_add(&l, &all) == 0);
	const char *cut[] = {"255.255.255.255", "198.18.0.9", "0.0.0.0", "198.18.0.8", "198.18.0.200"};
	for (size_t i = 0; i < BH_ARRAY_SIZE(cut); i++) {
		struct addr_range r = {A(cut[i]), A(cut[i])};
		CHECK(range_list_add(&cuts, &r) == 0);
	}
	CHECK(range_list_subtract_list(&l, &cuts) == 0);
	format_list(&l, out, sizeof(out));
	CHECK_STR(out, "0.0.0.1-198.18.0.7,198.18.0.10-198.18.0.199,198.18.0.201-255.255.255.254");
	range_list_release(&cuts);
	arena_free(a);
}

TEST(range_list_normalize_merges_overlap_and_adjacency)
{
	struct range_list l;
	char out[512];
	const char *in[][2] = {{"198.18.0.10", "198.18.0.20"}, {"198.18.0.1", "198.18.0.5"},
			       {"198.18.0.6", "198.18.0.6"},   {"198.18.0.15", "198.18.0.30"},
			       {"198.18.1.0", "198.18.1.0"},   {"2001:db8::1", "2001:db8::1"}};
	range_list_init(&l, NULL);
	for (size_t i = 0; i < BH_ARRAY_SIZE(in); i++) {
		struct addr_range r = {A(in[i][0]), A(in[i][1])};
		CHECK(range_list_add(&l, &r) == 0);
	}
	range_list_normalize(&l);
	format_list(&l, out, sizeof(out));
	CHECK_STR(out, "198.18.0.1-198.18.0.6,198.18.0.10-198.18.0.30,198.18.1.0,2001:db8::1");
	struct bh_addr probe = A("198.18.0.7");
	CHECK(!range_list_contains(&l, &probe));
	probe = A("198.18.0.30");
	CHECK(range_list_contains(&l, &probe));
	probe = A("198.18.0.31");
	CHECK(!range_list_contains(&l, &probe));
	probe = A("2001:db8::1");
	CHECK(range_list_contains(&l, &probe));
	range_list_release(&l);
}

TEST(range_list_sort_unique_keeps_adjacent_hosts)
{
	struct range_list l;
	char out[512];
	const char *in[] = {"198.18.0.3", "198.18.0.2", "198.18.0.3", "198.18.0.1"};
	range_list_init(&l, NULL);
	for (size_t i = 0; i < BH_ARRAY_SIZE(in); i++) {
		struct addr_range r = {A(in[i]), A(in[i])};
		CHECK(range_list_add(&l, &r) == 0);
	}
	range_list_sort_unique(&l);
	format_list(&l, out, sizeof(out));
	CHECK_STR(out, "198.18.0.1,198.18.0.2,198.18.0.3");
	range_list_release(&l);
}

TEST(range_parse_round_trip)
{
	struct addr_range r;
	char buf[RANGE_STRLEN];
	CHECK(range_parse("198.18.0.1-198.18.0.9", &r) == 0);
	range_format(&r, buf);
	CHECK_STR(buf, "198.18.0.1-198.18.0.9");
	CHECK(range_parse("2001:db8::5", &r) == 0);
	range_format(&r, buf);
	CHECK_STR(buf, "2001:db8::5");
	CHECK(range_parse("198.18.0.9-198.18.0.1", &r) == -EINVAL);
	CHECK(range_parse("198.18.0.1-2001:db8::1", &r) == -EINVAL);
	CHECK(range_parse("198.18.0.1-", &r) == -EINVAL);
}

TEST(sha256_known_vectors)
{
	char hex[65];
	sha256_hex("", 0, hex);
	CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sha256_hex("abc", 3, hex);
	CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	sha256_hex(two_blocks, strlen(two_blocks), hex);
	CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	/* Fed in odd pieces, the digest is the same. */
	struct sha256 h;
	uint8_t d1[32], d2[32];
	sha256_init(&h);
	for (size_t i = 0; i < strlen(two_blocks); i += 7)
		sha256_update(&h, two_blocks + i, strlen(two_blocks) - i < 7 ? strlen(two_blocks) - i : 7);
	sha256_final(&h, d1);
	sha256_init(&h);
	sha256_update(&h, two_blocks, strlen(two_blocks));
	sha256_final(&h, d2);
	CHECK(memcmp(d1, d2, 32) == 0);
	/* The million a's of FIPS 180-2, through the long-input path. */
	char *million = malloc(1000000);
	CHECK(million != NULL);
	if (million) {
		memset(million, 'a', 1000000);
		sha256_hex(million, 1000000, hex);
		CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
		free(million);
	}
}

/* The SHA-NI blocks (where this CPU has them) and the portable ones give
 * the same digests, for every length across a few blocks and for data fed
 * in random pieces. */
TEST(sha256_the_cpu_path_and_the_portable_one_agree)
{
	uint8_t data[1024], a[32], b[32];
	unsigned seed = 7;
	bool all_same = true;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)rand_r(&seed);
	for (size_t len = 0; len <= sizeof(data); len += len < 200 ? 1 : 61) {
		for (int portable = 0; portable < 2; portable++) {
			struct sha256 h;

			sha256_use_portable(portable);
			sha256_init(&h);
			for (size_t at = 0; at < len;) {
				size_t n = 1 + (size_t)rand_r(&seed) % 150;

				n = n > len - at ? len - at : n;
				sha256_update(&h, data + at, n);
				at += n;
			}
			sha256_final(&h, portable ? b : a);
		}
		all_same &= memcmp(a, b, 32) == 0;
	}
	sha256_use_portable(false);
	CHECK(all_same);
}

/* addr_format() writes what the C library's inet_ntop() does, which the
 * bundle hashes were made with before: every pattern of zero words with
 * a few values, the IPv4-compatible and -mapped forms, and many random
 * addresses. Returns the mismatches (the first few printed). */
static unsigned ntop_mismatch(const struct bh_addr *a, unsigned seen)
{
	char want[ADDR_STRLEN], got[ADDR_STRLEN];

	if (!inet_ntop(a->family, a->bytes, want, sizeof(want)))
		return 1;
	addr_format(a, got);
	if (strcmp(want, got) == 0)
		return 0;
	if (seen < 5)
		fprintf(stderr, "  inet_ntop %s, addr_format %s\n", want, got);
	return 1;
}

TEST(format_writes_what_inet_ntop_writes)
{
	static const unsigned values[] = {1, 0xa, 0xff, 0x100, 0xabcd, 0xffff};
	static const uint8_t octets[] = {0, 1, 9, 10, 99, 100, 199, 200, 255};
	struct bh_addr a = {.family = AF_INET};
	unsigned bad = 0, state = 12345;

	for (unsigned i = 0; i < 9 * 9 * 9 * 9; i++) {
		for (unsigned k = 0, v = i; k < 4; k++, v /= 9)
			a.bytes[k] = octets[v % 9];
		bad += ntop_mismatch(&a, bad);
	}
	a.family = AF_INET6;
	for (unsigned mask = 0; mask < 256; mask++) {
		for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++) {
			for (unsigned w = 0; w < 8; w++) {
				unsigned x = mask >> w & 1 ? values[v] : 0;

				a.bytes[2 * w] = (uint8_t)(x >> 8);
				a.bytes[2 * w + 1] = (uint8_t)x;
			}
			bad += ntop_mismatch(&a, bad);
			a.bytes[10] = a.bytes[11] = 0xff; /* word 5: the mapped form's */
			bad += ntop_mismatch(&a, bad);
		}
	}
	for (unsigned i = 0; i < 200000; i++) {
		for (unsigned w = 0; w < 8; w++) {
			state = state * 1103515245u + 12345u;
			unsigned r = state >> 8, x = r & 3 ? 0 : r >> 4 & (r & 4 ? 0xffff : 0xf);

			if ((r & 0x30000) == 0x30000)
				x = 0xffff;
			a.bytes[2 * w] = (uint8_t)(x >> 8);
			a.bytes[2 * w + 1] = (uint8_t)x;
		}
		bad += ntop_mismatch(&a, bad);
	}
	CHECK(bad == 0);
}

int main(void)
{
	return test_main();
}
