/* SHA-256 (FIPS 180-4), for bundle hashes. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN 32

struct sha256 {
	uint32_t state[8];
	uint64_t length; /* bytes hashed so far */
	uint8_t block[64];
	size_t fill;
};

void sha256_init(struct sha256 *h);
void sha256_update(struct sha256 *h, const void *data, size_t len);
void sha256_final(struct sha256 *h, uint8_t digest[SHA256_DIGEST_LEN]);
/* Lowercase hex of the digest of data; out holds 65 bytes. */
void sha256_hex(const void *data, size_t len, char out[2 * SHA256_DIGEST_LEN + 1]);
/* For tests: true hashes with the portable code even where the CPU has
 * SHA instructions (used when it has them, otherwise); false goes back. */
void sha256_use_portable(bool portable);
