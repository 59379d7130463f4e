/* SPDX-License-Identifier: MIT */
/*
 * inspect: the pure parts of fluid-inspect (docs/diff.md), kept apart from
 * the tree walk so unit tests and fuzzers can drive them: SHA-256, base64,
 * a bounded output buffer with JSON string escaping, glob matching for the
 * ignore list, a unified line diff, and parsers for dpkg's status file and
 * passwd/group/shadow.
 *
 * Everything parsed here comes from a guest that had root: inputs are
 * arbitrary bytes, every parser bounds what it keeps and never trusts a
 * length or count it reads. Functions return 0 / -errno (-ENOMEM only,
 * unless said otherwise); the caller owns what ret_ parameters return.
 */
#ifndef FL_INSPECT_H
#define FL_INSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* SHA-256: common/sha256.h (FlSha256), compiled into fluid-inspect. */
#include "sha256.h"

/* ---- Output buffer -------------------------------------------------------- */

/* A growable buffer that refuses to grow past max (then overflow is set and
 * further appends are dropped). */
typedef struct InsBuf {
	char *p;
	size_t len, cap, max;
	bool overflow;
} InsBuf;

void ins_buf_init(InsBuf *b, size_t max);
void ins_buf_free(InsBuf *b);
void ins_buf_put(InsBuf *b, const void *data, size_t len);
void ins_buf_puts(InsBuf *b, const char *s);
__attribute__((format(printf, 2, 3))) void ins_buf_printf(InsBuf *b, const char *fmt, ...);

/* True when s[0..len) is valid UTF-8 (no overlongs, surrogates, > U+10FFFF). */
bool ins_utf8_valid(const char *s, size_t len);
/*
 * Appends s[0..len) as a JSON string literal (with quotes). Control
 * characters, '"' and '\\' are escaped; each invalid UTF-8 byte becomes
 * U+FFFD. Returns true when the input was valid UTF-8 (output is exact).
 */
bool ins_json_str(InsBuf *b, const char *s, size_t len);
/* Appends the base64 (RFC 4648, padded) of data. */
void ins_base64(InsBuf *b, const void *data, size_t len);

/* ---- Ignore globs --------------------------------------------------------- */

/*
 * Matches an absolute path. '*' matches within one component, '**' any
 * number of characters including '/', '?' one character other than '/',
 * everything else literally. A pattern without '/' is matched against the
 * last component only. Bounded: patterns and paths are short (<= 4096), and
 * the matcher backtracks at most once per star.
 */
bool ins_glob_match(const char *pattern, const char *path);

typedef struct InsIgnore {
	char **pats;
	size_t n, cap;
} InsIgnore;

#define INS_MAX_PATTERNS 1024
#define INS_MAX_PATTERN_LEN 255

/* The built-in list (docs/diff.md). */
extern const char *const ins_default_ignore[];
int ins_ignore_add(InsIgnore *ig, const char *pattern);
/* Adds the patterns of a text (one per line, '#' comments, blank lines skipped). */
int ins_ignore_add_text(InsIgnore *ig, const char *text, size_t len);
bool ins_ignored(const InsIgnore *ig, const char *path);
void ins_ignore_free(InsIgnore *ig);

/* ---- Line diff ------------------------------------------------------------ */

#define INS_DIFF_MAX_LINES 50000
#define INS_DIFF_MAX_LINE 16384
#define INS_DIFF_MAX_EDIT 4000 /* Myers D bound; beyond it the middle is replaced whole */

/*
 * Appends a unified diff (3 lines of context, "--- a/PATH" and "+++ b/PATH"
 * headers, "\ No newline at end of file" markers) of a -> b to out. At most
 * max_out bytes are appended; *ret_truncated is set when the diff was cut.
 * Inputs beyond INS_DIFF_MAX_LINES lines or with a line longer than
 * INS_DIFF_MAX_LINE give -E2BIG (the caller reports no diff). The diff is
 * always correct; it is minimal when the edit distance is within
 * INS_DIFF_MAX_EDIT (after common prefix and suffix are removed).
 * Returns 0 (no differences also gives 0 with nothing appended).
 */
int ins_unified_diff(const char *a, size_t alen, const char *b, size_t blen, const char *path,
		     size_t max_out, InsBuf *out, bool *ret_truncated);

/* ---- dpkg status ---------------------------------------------------------- */

#define INS_MAX_RECORDS 100000
#define INS_MAX_FIELD 1024

typedef struct InsPkg {
	char *name;    /* "name" or "name:arch" for a second arch of one name */
	char *version;
} InsPkg;

/*
 * Installed packages (Status "install ok installed") of a dpkg status
 * file, sorted by name, duplicates dropped. *ret_truncated when a bound
 * was hit. Fields longer than INS_MAX_FIELD make the record ignored.
 */
int ins_dpkg_parse(const char *buf, size_t len, InsPkg **ret, size_t *ret_n, bool *ret_truncated);
void ins_pkgs_free(InsPkg *p, size_t n);

/* ---- passwd / group / shadow ---------------------------------------------- */

typedef struct InsUser {
	char *name, *gecos, *home, *shell;
	uint32_t uid, gid;
} InsUser;

typedef struct InsGroup {
	char *name;
	uint32_t gid;
	char **members;
	size_t n_members;
} InsGroup;

typedef enum InsPw { INS_PW_NONE = 0, INS_PW_LOCKED = 1, INS_PW_SET = 2 } InsPw;

typedef struct InsShadow {
	char *name;
	InsPw pw; /* presence only: the hash itself is never kept */
} InsShadow;

#define INS_MAX_MEMBERS 4096

/* Sorted by name, duplicate names keep the first (like getpwnam). Malformed
 * lines (wrong field count, non-numeric ids, names with odd bytes) are skipped. */
int ins_passwd_parse(const char *buf, size_t len, InsUser **ret, size_t *ret_n,
		     bool *ret_truncated);
int ins_group_parse(const char *buf, size_t len, InsGroup **ret, size_t *ret_n,
		    bool *ret_truncated);
int ins_shadow_parse(const char *buf, size_t len, InsShadow **ret, size_t *ret_n,
		     bool *ret_truncated);
void ins_users_free(InsUser *u, size_t n);
void ins_groups_free(InsGroup *g, size_t n);
void ins_shadows_free(InsShadow *s, size_t n);
const char *ins_pw_name(InsPw pw);

#endif
