/* SHA-256 (FIPS 180-4). Small and dependency-free: bundles are hashed in
 * the library, which links nothing beyond jansson. Where the CPU has the
 * SHA extensions (x86-64: SHA-NI), blocks go through them, about five
 * times faster than the portable code: hashing is most of checking a big
 * bundle (a 100,000-member one is 3.5 MB of text). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "bulkhead/sha256.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define SHA256_HAVE_NI 1
#endif

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32 - n));
}

static void sha256_block(struct sha256 *h, const uint8_t *p)
{
	uint32_t w[64];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
		       p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	uint32_t a = h->state[0], b = h->state[1], c = h->state[2], d = h->state[3];
	uint32_t e = h->state[4], f = h->state[5], g = h->state[6], hh = h->state[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
		uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
		hh = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}
	h->state[0] += a;
	h->state[1] += b;
	h->state[2] += c;
	h->state[3] += d;
	h->state[4] += e;
	h->state[5] += f;
	h->state[6] += g;
	h->state[7] += hh;
}

#ifdef SHA256_HAVE_NI
/* n blocks with the SHA extensions. The state is kept as the instructions
 * want it, in two registers: (A, B, E, F) and (C, D, G, H). Each
 * sha256rnds2 does two rounds; the message schedule runs four words
 * ahead in a ring of four registers (sha256msg1 adds sigma0 of the word
 * 15 back, then the word 7 back is added, and sha256msg2 adds sigma1 of
 * the word 2 back). */
__attribute__((target("sha,sse4.1,ssse3"))) static void sha256_blocks_ni(uint32_t state[8], const uint8_t *p,
									 size_t n)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	__m128i dcba = _mm_loadu_si128((const __m128i *)&state[0]);
	__m128i hgfe = _mm_loadu_si128((const __m128i *)&state[4]);
	__m128i cdab = _mm_shuffle_epi32(dcba, 0xb1);
	__m128i efgh = _mm_shuffle_epi32(hgfe, 0x1b);
	__m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
	__m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xf0);

	for (; n; n--, p += 64) {
		__m128i abef_in = abef, cdgh_in = cdgh, w[4];

		for (int g = 0; g < 16; g++) {
			__m128i x;

			if (g < 4) {
				x = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), bswap);
			} else {
				x = _mm_sha256msg1_epu32(w[g % 4], w[(g + 1) % 4]);
				x = _mm_add_epi32(x, _mm_alignr_epi8(w[(g + 3) % 4], w[(g + 2) % 4], 4));
				x = _mm_sha256msg2_epu32(x, w[(g + 3) % 4]);
			}
			w[g % 4] = x;
			__m128i k = _mm_add_epi32(x, _mm_loadu_si128((const __m128i *)&K[4 * g]));

			cdgh = _mm_sha256rnds2_epu32(cdgh, abef, k);
			abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(k, 0x0e));
		}
		abef = _mm_add_epi32(abef, abef_in);
		cdgh = _mm_add_epi32(cdgh, cdgh_in);
	}
	__m128i feba = _mm_shuffle_epi32(abef, 0x1b);
	__m128i dchg = _mm_shuffle_epi32(cdgh, 0xb1);

	_mm_storeu_si128((__m128i *)&state[0], _mm_blend_epi16(feba, dchg, 0xf0));
	_mm_storeu_si128((__m128i *)&state[4], _mm_alignr_epi8(dchg, feba, 8));
}

static bool cpu_has_sha_ni(void)
{
	unsigned a, b, c, d;

	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3))
		return false;
	return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_SHA);
}
#endif

/* -1 not asked yet, 0 portable, 1 SHA-NI. */
static int use_ni = -1;

void sha256_use_portable(bool portable)
{
#ifdef SHA256_HAVE_NI
	use_ni = portable ? 0 : cpu_has_sha_ni();
#else
	(void)portable;
#endif
}

static void sha256_blocks(struct sha256 *h, const uint8_t *p, size_t n)
{
#ifdef SHA256_HAVE_NI
	if (use_ni < 0)
		use_ni = cpu_has_sha_ni();
	if (use_ni) {
		sha256_blocks_ni(h->state, p, n);
		return;
	}
#endif
	for (; n; n--, p += 64)
		sha256_block(h, p);
}

void sha256_init(struct sha256 *h)
{
	static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
				       0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	memcpy(h->state, iv, sizeof(iv));
	h->length = 0;
	h->fill = 0;
}

void sha256_update(struct sha256 *h, const void *data, size_t len)
{
	const uint8_t *p = data;
	h->length += len;
	if (h->fill) {
		size_t n = 64 - h->fill;
		if (n > len)
			n = len;
		memcpy(h->block + h->fill, p, n);
		h->fill += n;
		p += n;
		len -= n;
		if (h->fill < 64)
			return;
		sha256_blocks(h, h->block, 1);
		h->fill = 0;
	}
	/* Whole blocks straight from the input, the rest kept. */
	sha256_blocks(h, p, len / 64);
	p += len / 64 * 64;
	len %= 64;
	if (len)
		memcpy(h->block, p, len);
	h->fill = len;
}

void sha256_final(struct sha256 *h, uint8_t digest[SHA256_DIGEST_LEN])
{
	uint64_t bits = h->length * 8;
	static const uint8_t pad = 0x80, zero = 0;
	sha256_update(h, &pad, 1);
	while (h->fill != 56)
		sha256_update(h, &zero, 1);
	uint8_t len_be[8];
	for (int i = 0; i < 8; i++)
		len_be[i] = (uint8_t)(bits >> (56 - 8 * i));
	sha256_update(h, len_be, 8);
	for (int i = 0; i < 8; i++) {
		digest[4 * i] = (uint8_t)(h->state[i] >> 24);
		digest[4 * i + 1] = (uint8_t)(h->state[i] >> 16);
		digest[4 * i + 2] = (uint8_t)(h->state[i] >> 8);
		digest[4 * i + 3] = (uint8_t)h->state[i];
	}
}

void sha256_hex(const void *data, size_t len, char out[2 * SHA256_DIGEST_LEN + 1])
{
	struct sha256 h;
	uint8_t d[SHA256_DIGEST_LEN];
	sha256_init(&h);
	sha256_update(&h, data, len);
	sha256_final(&h, d);
	for (int i = 0; i < SHA256_DIGEST_LEN; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}
