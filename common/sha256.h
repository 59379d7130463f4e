/* SPDX-License-Identifier: MIT */
/* sha256: incremental SHA-256 and hex helpers. */
#ifndef FL_SHA256_H
#define FL_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct FlSha256 {
	uint32_t h[8];
	uint64_t len;
	uint8_t buf[64];
	size_t n;
} FlSha256;

void fl_sha256_init(FlSha256 *s);
void fl_sha256_update(FlSha256 *s, const void *data, size_t len);
void fl_sha256_final(FlSha256 *s, uint8_t out[32]);
/* Final digest as 64 lowercase hex digits + NUL. */
void fl_sha256_final_hex(FlSha256 *s, char out[65]);
/* One-shot digest of data as hex. */
void fl_sha256_hex(const void *data, size_t len, char out[65]);

#endif
