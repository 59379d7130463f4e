// SPDX-License-Identifier: MIT
/*
 * Content ids of base images and frozen layers: SHA-256 of whole files
 * (the hash itself is common/sha256.c, compiled into this library).
 */
#include <errno.h>
#include <fcntl.h>

#include "cleanup.h"
#include "internal.h"
#include "sha256.h"

void img_hex(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

int img_sha256_file(const char *path, char ret_hex[IMG_ID_SIZE], FlError *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fl_error_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	size_t bufsz = 1 << 20;
	_cleanup_free_ uint8_t *buf = malloc(bufsz);
	if (!buf)
		return fl_error_set(err, -ENOMEM, "out of memory");
	FlSha256 s;
	fl_sha256_init(&s);
	for (;;) {
		ssize_t n = read(fd, buf, bufsz);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fl_error_set(err, -errno, "cannot read %s: %s", path, strerror(errno));
		}
		if (n == 0)
			break;
		fl_sha256_update(&s, buf, (size_t)n);
	}
	uint8_t d[32];
	fl_sha256_final(&s, d);
	img_hex(d, 32, ret_hex);
	return 0;
}
