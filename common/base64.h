/* SPDX-License-Identifier: MIT */
/* base64: standard base64 (RFC 4648 section 4), one line, no line breaks. */
#ifndef FL_BASE64_H
#define FL_BASE64_H

#include <stdbool.h>
#include <stddef.h>

/* Encodes len bytes; malloc'd, NUL-terminated; NULL when out of memory. */
char *fl_base64_encode(const void *data, size_t len);

/*
 * Decodes s strictly: a multiple of 4 characters of the alphabet, '='
 * padding only at the very end. *ret is malloc'd and NUL-terminated (the
 * NUL is not counted in *ret_len). 0, -EINVAL (not base64) or -ENOMEM.
 */
int fl_base64_decode(const char *s, char **ret, size_t *ret_len);

#endif
