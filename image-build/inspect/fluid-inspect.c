// SPDX-License-Identifier: MIT
/*
 * fluid-inspect: the trusted diff's guest half (docs/diff.md). Runs inside
 * an inspector VM (a pristine template clone), compares two read-only
 * mounted snapshot trees and prints one JSON document on stdout: files,
 * packages (dpkg status), systemd services, users and groups, what the
 * ignore list hid.
 *
 *   fluid-inspect --old /mnt/a --new /mnt/b [--ignore FILE] [--ignore-add FILE]
 *                 [--ignore-pattern PAT]... [--max-diff BYTES] [--max-content BYTES]
 *
 * DESIGN: both trees were written by a guest that had root, so they are
 * hostile data. Nothing in them is executed; every path is opened one
 * component at a time relative to the tree's root fd with O_NOFOLLOW, so a
 * symlink (absolute or "..") can never lead outside the tree; entries are
 * lstat'ed, the walk stays on the tree's filesystem and is bounded in
 * depth, path length and entry count; reads, diffs and the output are
 * capped (a cap that is hit sets "truncated"). Regular files whose size
 * matches are compared byte for byte (metadata such as mtime can be forged
 * by the guest); only changed files are hashed. Static binary, libc only.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "inspect.h"

#define MAX_PATH 4096
#define MAX_DEPTH 64
#define MAX_ENTRIES 2000000
#define MAX_CHANGES 100000
#define MAX_OUTPUT (48u << 20)
#define CONTENT_BUDGET (40u << 20) /* stop adding content_b64 beyond this much output */
#define DIFF_INPUT_MAX (4u << 20)
#define DPKG_MAX (64u << 20)
#define ACCOUNTS_MAX (4u << 20)
#define UNIT_MAX (1u << 20)
#define CHUNK (256u << 10)

typedef struct Ent {
	char *path; /* absolute inside the tree: "/etc/passwd" */
	char *target;
	uint32_t mode, uid, gid;
	uint64_t size, rdev;
	int64_t mtime_s, mtime_ns;
	bool ignored;
} Ent;

typedef struct Tree {
	const char *root;
	int rootfd;
	dev_t dev;
	Ent *v;
	size_t n, cap;
	InsUser *users;
	size_t n_users;
	InsGroup *groups;
	size_t n_groups;
	InsShadow *shadow;
	size_t n_shadow;
} Tree;

static InsIgnore ignore;
static bool truncated;
static size_t max_diff = 64u << 10, max_content = 256u << 10;
static uint64_t compared_bytes;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("fluid-inspect: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		die("out of memory");
	return q;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		die("out of memory");
	return p;
}

/* ---- Walking ------------------------------------------------------------------ */

static void walk(Tree *t, int dfd, char *path, size_t plen, int depth, bool ign)
{
	int fd = dup(dfd);
	if (fd < 0)
		die("dup: %m");
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		truncated = true;
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *name = de->d_name;
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		size_t nl = strlen(name);
		if (plen + 1 + nl >= MAX_PATH) {
			truncated = true;
			continue;
		}
		if (t->n >= MAX_ENTRIES) {
			truncated = true;
			break;
		}
		size_t np = plen;
		if (np != 1)
			path[np++] = '/';
		memcpy(path + np, name, nl + 1);
		np += nl;
		struct stat st;
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			truncated = true;
			goto next;
		}
		if (st.st_dev != t->dev) /* something mounted here: not part of the disk */
			goto next;
		if (t->n == t->cap) {
			t->cap = t->cap ? t->cap * 2 : 4096;
			t->v = xrealloc(t->v, t->cap * sizeof(*t->v));
		}
		Ent *e = &t->v[t->n++];
		*e = (Ent){.path = xstrdup(path), .mode = st.st_mode, .uid = st.st_uid,
			   .gid = st.st_gid, .size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0,
			   .rdev = st.st_rdev, .mtime_s = st.st_mtim.tv_sec,
			   .mtime_ns = st.st_mtim.tv_nsec,
			   .ignored = ign || ins_ignored(&ignore, path)};
		if (S_ISLNK(st.st_mode)) {
			char buf[MAX_PATH];
			ssize_t k = readlinkat(dfd, name, buf, sizeof(buf) - 1);
			if (k < 0) {
				k = 0;
				truncated = true;
			}
			buf[k] = 0;
			e->target = xstrdup(buf);
			e->size = (uint64_t)k;
		} else if (S_ISDIR(st.st_mode)) {
			bool sub_ign = e->ignored;
			if (depth + 1 >= MAX_DEPTH) {
				truncated = true;
				goto next;
			}
			int cfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (cfd < 0) {
				truncated = true;
				goto next;
			}
			walk(t, cfd, path, np, depth + 1, sub_ign);
			close(cfd);
		}
	next:
		path[plen] = 0;
	}
	closedir(d);
}

static int cmp_ent(const void *a, const void *b)
{
	return strcmp(((const Ent *)a)->path, ((const Ent *)b)->path);
}

/*
 * Opens PATH (absolute inside the tree) one component at a time with
 * O_NOFOLLOW, so neither a symlinked directory nor ".." leaves the tree.
 * The last component must be a regular file. Returns an fd or -errno.
 */
static int open_in_tree(const Tree *t, const char *path)
{
	char comp[MAX_PATH];
	int dfd = dup(t->rootfd);
	if (dfd < 0)
		return -errno;
	const char *p = path;
	while (*p == '/')
		p++;
	while (*p) {
		const char *s = strchr(p, '/');
		size_t n = s ? (size_t)(s - p) : strlen(p);
		if (n >= sizeof(comp) || (n == 2 && !memcmp(p, "..", 2))) {
			close(dfd);
			return -EINVAL;
		}
		memcpy(comp, p, n);
		comp[n] = 0;
		bool last = !s || !s[1];
		int fd = openat(dfd, comp,
				(last ? O_RDONLY | O_NONBLOCK | O_NOCTTY : O_RDONLY | O_DIRECTORY) |
					O_NOFOLLOW | O_CLOEXEC);
		int saved = errno;
		close(dfd);
		if (fd < 0)
			return -saved;
		dfd = fd;
		if (last)
			break;
		p = s + 1;
		while (*p == '/')
			p++;
	}
	struct stat st;
	if (fstat(dfd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(dfd);
		return -EINVAL;
	}
	return dfd;
}

/* Reads at most max bytes of a regular file in the tree; -EFBIG beyond. */
static int read_capped(const Tree *t, const char *path, size_t max, char **ret, size_t *ret_len)
{
	int fd = open_in_tree(t, path);
	if (fd < 0)
		return fd;
	size_t len = 0, cap = 0;
	char *buf = NULL;
	for (;;) {
		if (len + CHUNK + 1 > cap) {
			cap = len + CHUNK + 1;
			buf = xrealloc(buf, cap);
		}
		ssize_t k = read(fd, buf + len, CHUNK);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int r = -errno;
			close(fd);
			free(buf);
			return r;
		}
		if (k == 0)
			break;
		len += (size_t)k;
		if (len > max) {
			close(fd);
			free(buf);
			return -EFBIG;
		}
	}
	close(fd);
	buf = xrealloc(buf, len + 1);
	buf[len] = 0;
	*ret = buf;
	*ret_len = len;
	return 0;
}

/* ---- File content ------------------------------------------------------------ */

typedef struct U8State {
	int need;
	unsigned char lo, hi;
} U8State;

/* Streaming UTF-8 check (same rules as ins_utf8_valid). */
static bool u8_feed(U8State *s, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned c = p[i];
		if (s->need) {
			if (c < s->lo || c > s->hi)
				return false;
			s->lo = 0x80;
			s->hi = 0xbf;
			s->need--;
			continue;
		}
		if (c < 0x80) {
			if (!c)
				return false; /* NUL: binary */
			continue;
		}
		s->lo = 0x80;
		s->hi = 0xbf;
		if (c >= 0xc2 && c <= 0xdf)
			s->need = 1;
		else if (c == 0xe0)
			s->need = 2, s->lo = 0xa0;
		else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
			s->need = 2;
		else if (c == 0xed)
			s->need = 2, s->hi = 0x9f;
		else if (c == 0xf0)
			s->need = 3, s->lo = 0x90;
		else if (c >= 0xf1 && c <= 0xf3)
			s->need = 3;
		else if (c == 0xf4)
			s->need = 3, s->hi = 0x8f;
		else
			return false;
	}
	return true;
}

typedef struct Scan {
	bool ok;
	char sha[65];
	uint64_t size;
	bool binary;
	char *data; /* the first `keep` bytes */
	size_t len;
	bool complete; /* data holds the whole file */
} Scan;

static void scan_file(const Tree *t, const char *path, size_t keep, Scan *s)
{
	memset(s, 0, sizeof(*s));
	int fd = open_in_tree(t, path);
	if (fd < 0) {
		truncated = true;
		return;
	}
	FlSha256 h;
	fl_sha256_init(&h);
	U8State u = {0};
	bool text = true;
	char *buf = xrealloc(NULL, CHUNK);
	size_t cap = 0;
	for (;;) {
		ssize_t k = read(fd, buf, CHUNK);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			truncated = true;
			break;
		}
		if (k == 0)
			break;
		fl_sha256_update(&h, buf, (size_t)k);
		if (text)
			text = u8_feed(&u, (unsigned char *)buf, (size_t)k);
		if (s->len < keep) {
			size_t take = keep - s->len < (size_t)k ? keep - s->len : (size_t)k;
			if (s->len + take + 1 > cap) {
				cap = s->len + take + 1 > cap * 2 ? s->len + take + 1 : cap * 2;
				s->data = xrealloc(s->data, cap);
			}
			memcpy(s->data + s->len, buf, take);
			s->len += take;
			s->data[s->len] = 0;
		}
		s->size += (uint64_t)k;
		compared_bytes += (uint64_t)k;
	}
	free(buf);
	close(fd);
	if (u.need)
		text = false;
	s->binary = !text;
	s->complete = s->len == s->size;
	fl_sha256_final_hex(&h, s->sha);
	s->ok = true;
}

static void scan_free(Scan *s)
{
	free(s->data);
	s->data = NULL;
}

/* Byte-for-byte comparison of two regular files of equal size. */
static bool same_content(const Tree *a, const Tree *b, const char *path)
{
	int fa = open_in_tree(a, path), fb = open_in_tree(b, path);
	bool same = fa >= 0 && fb >= 0;
	char *ba = NULL, *bb = NULL;
	if (same) {
		ba = xrealloc(NULL, CHUNK);
		bb = xrealloc(NULL, CHUNK);
	}
	while (same) {
		ssize_t ka = read(fa, ba, CHUNK);
		if (ka < 0) {
			same = false;
			break;
		}
		size_t got = 0;
		while (got < (size_t)ka) {
			ssize_t kb = read(fb, bb + got, (size_t)ka - got);
			if (kb <= 0)
				break;
			got += (size_t)kb;
		}
		if (got != (size_t)ka || memcmp(ba, bb, got)) {
			same = false;
			break;
		}
		compared_bytes += 2 * got;
		if (ka == 0)
			break;
	}
	if (fa < 0 || fb < 0)
		truncated = true;
	free(ba);
	free(bb);
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
	return same;
}

/* ---- Names ---------------------------------------------------------------------- */

static const char *type_name(uint32_t mode)
{
	return S_ISREG(mode) ? "file" : S_ISDIR(mode) ? "dir" : S_ISLNK(mode) ? "symlink" : "other";
}

static void put_owner(InsBuf *o, const Tree *t, uint32_t id, bool group)
{
	if (group) {
		for (size_t i = 0; i < t->n_groups; i++)
			if (t->groups[i].gid == id) {
				ins_json_str(o, t->groups[i].name, strlen(t->groups[i].name));
				return;
			}
	} else {
		for (size_t i = 0; i < t->n_users; i++)
			if (t->users[i].uid == id) {
				ins_json_str(o, t->users[i].name, strlen(t->users[i].name));
				return;
			}
	}
	ins_buf_printf(o, "\"%u\"", id);
}

static void put_key(InsBuf *o, const char *key)
{
	ins_buf_puts(o, "\"");
	ins_buf_puts(o, key);
	ins_buf_puts(o, "\":");
}

static void put_str(InsBuf *o, const char *key, const char *val)
{
	put_key(o, key);
	ins_json_str(o, val, strlen(val));
}

/* "path" (and "path_b64" when the name is not UTF-8). */
static void put_path(InsBuf *o, const char *path)
{
	put_key(o, "path");
	if (!ins_json_str(o, path, strlen(path))) {
		ins_buf_puts(o, ",\"path_b64\":\"");
		ins_base64(o, path, strlen(path));
		ins_buf_puts(o, "\"");
	}
}

/*
 * Files whose content must never leave the inspector (password hashes):
 * reported with size and metadata only, "redacted": true. Accounts are
 * described by users_* / groups_* (password presence only).
 */
static bool redacted(const char *path)
{
	static const char *const secret[] = {"/etc/shadow", "/etc/gshadow", "/etc/shadow-",
					     "/etc/gshadow-", "/etc/security/opasswd"};
	for (size_t i = 0; i < sizeof(secret) / sizeof(*secret); i++)
		if (!strcmp(path, secret[i]))
			return true;
	return false;
}

/* type, mode, owner, group, size, sha256, target of one side. */
static void put_meta(InsBuf *o, const Tree *t, const Ent *e, const Scan *s)
{
	if (s && redacted(e->path))
		s = NULL;
	put_str(o, "type", type_name(e->mode));
	ins_buf_printf(o, ",\"mode\":\"%04o\",", e->mode & 07777);
	put_key(o, "owner");
	put_owner(o, t, e->uid, false);
	ins_buf_puts(o, ",");
	put_key(o, "group");
	put_owner(o, t, e->gid, true);
	ins_buf_printf(o, ",\"size\":%llu,\"sha256\":", (unsigned long long)(s && s->ok ? s->size : e->size));
	if (s && s->ok)
		ins_buf_printf(o, "\"%s\"", s->sha);
	else
		ins_buf_puts(o, "null");
	if (e->target) {
		ins_buf_puts(o, ",");
		put_str(o, "target", e->target);
	}
}

static void put_content(InsBuf *o, const Scan *s)
{
	if (!s || !s->ok || !s->complete || s->size > max_content)
		return;
	if (o->len > CONTENT_BUDGET) {
		truncated = true;
		return;
	}
	ins_buf_puts(o, ",\"content_b64\":\"");
	ins_base64(o, s->data, s->len);
	ins_buf_puts(o, "\"");
}

/* ---- Files ------------------------------------------------------------------------ */

typedef struct Out {
	InsBuf added, removed, modified;
	size_t n_added, n_removed, n_modified;
	uint64_t ignored;
} Out;

static size_t out_total(const Out *o) { return o->added.len + o->removed.len + o->modified.len; }

static bool budget(Out *o)
{
	if (o->n_added + o->n_removed + o->n_modified >= MAX_CHANGES || out_total(o) > MAX_OUTPUT - (1u << 20)) {
		truncated = true;
		return false;
	}
	return true;
}

static void sep(InsBuf *b, size_t n) { ins_buf_puts(b, n ? ",{" : "{"); }

static void file_added(Out *o, const Tree *b, const Ent *e)
{
	if (!budget(o))
		return;
	Scan s = {0};
	if (S_ISREG(e->mode))
		scan_file(b, e->path, max_content, &s);
	InsBuf *x = &o->added;
	sep(x, o->n_added++);
	put_path(x, e->path);
	ins_buf_puts(x, ",");
	put_meta(x, b, e, S_ISREG(e->mode) ? &s : NULL);
	/* content_b64 counts against the whole output */
	if (redacted(e->path))
		ins_buf_puts(x, ",\"redacted\":true");
	else if (out_total(o) <= CONTENT_BUDGET)
		put_content(x, &s);
	else if (S_ISREG(e->mode) && s.size <= max_content)
		truncated = true;
	ins_buf_printf(x, ",\"binary\":%s}", s.ok && s.binary ? "true" : "false");
	scan_free(&s);
}

static void file_removed(Out *o, const Ent *e)
{
	if (!budget(o))
		return;
	InsBuf *x = &o->removed;
	sep(x, o->n_removed++);
	put_path(x, e->path);
	ins_buf_puts(x, ",");
	put_str(x, "type", type_name(e->mode));
	ins_buf_puts(x, "}");
}

static void file_compare(Out *o, const Tree *a, const Ent *ea, const Tree *b, const Ent *eb)
{
	const char *ch[6];
	size_t nch = 0;
	bool content = false;
	if ((ea->mode & S_IFMT) != (eb->mode & S_IFMT))
		ch[nch++] = "type";
	if ((ea->mode & 07777) != (eb->mode & 07777) && !S_ISLNK(eb->mode))
		ch[nch++] = "mode";
	if (ea->uid != eb->uid)
		ch[nch++] = "owner";
	if (ea->gid != eb->gid)
		ch[nch++] = "group";
	if (S_ISLNK(ea->mode) && S_ISLNK(eb->mode) && strcmp(ea->target, eb->target))
		ch[nch++] = "target";
	if (S_ISREG(ea->mode) && S_ISREG(eb->mode) &&
	    (ea->size != eb->size || !same_content(a, b, eb->path)))
		content = true;
	if (((S_ISCHR(ea->mode) && S_ISCHR(eb->mode)) || (S_ISBLK(ea->mode) && S_ISBLK(eb->mode))) &&
	    ea->rdev != eb->rdev)
		content = true;
	if (content)
		ch[nch++] = "content";
	if (!nch || !budget(o))
		return;
	Scan sa = {0}, sb = {0};
	size_t keep_b = max_content > DIFF_INPUT_MAX ? max_content : DIFF_INPUT_MAX;
	if (S_ISREG(ea->mode) && S_ISREG(eb->mode) && content)
		scan_file(a, ea->path, DIFF_INPUT_MAX, &sa);
	else if (S_ISREG(ea->mode))
		scan_file(a, ea->path, 0, &sa);
	if (S_ISREG(eb->mode))
		scan_file(b, eb->path, content || (ea->mode & S_IFMT) != (eb->mode & S_IFMT) ? keep_b : 0,
			  &sb);
	InsBuf *x = &o->modified;
	sep(x, o->n_modified++);
	put_path(x, eb->path);
	ins_buf_puts(x, ",\"changes\":[");
	for (size_t i = 0; i < nch; i++)
		ins_buf_printf(x, "%s\"%s\"", i ? "," : "", ch[i]);
	ins_buf_puts(x, "],\"old\":{");
	put_meta(x, a, ea, S_ISREG(ea->mode) ? &sa : NULL);
	ins_buf_puts(x, "},\"new\":{");
	put_meta(x, b, eb, S_ISREG(eb->mode) ? &sb : NULL);
	bool secret = redacted(eb->path);
	if (S_ISREG(eb->mode) && !secret && (content || (ea->mode & S_IFMT) != (eb->mode & S_IFMT))) {
		if (out_total(o) <= CONTENT_BUDGET)
			put_content(x, &sb);
		else if (sb.size <= max_content)
			truncated = true;
	}
	ins_buf_puts(x, "}");
	bool binary = (sa.ok && sa.binary) || (sb.ok && sb.binary);
	if (secret)
		ins_buf_puts(x, ",\"redacted\":true");
	else if (content && S_ISREG(ea->mode) && S_ISREG(eb->mode) && !binary) {
		bool cut = false;
		int r = -E2BIG;
		InsBuf d;
		ins_buf_init(&d, max_diff + 4096);
		if (sa.ok && sb.ok && sa.complete && sb.complete)
			r = ins_unified_diff(sa.data ? sa.data : "", sa.len, sb.data ? sb.data : "",
					     sb.len, eb->path, max_diff, &d, &cut);
		if (r == 0 && d.len) {
			ins_buf_puts(x, ",");
			put_key(x, "diff");
			ins_json_str(x, d.p, d.len);
		}
		if (r < 0 || cut)
			ins_buf_puts(x, ",\"diff_truncated\":true");
		ins_buf_free(&d);
	}
	ins_buf_printf(x, ",\"binary\":%s}", binary ? "true" : "false");
	scan_free(&sa);
	scan_free(&sb);
}

static bool meta_differs(const Ent *a, const Ent *b)
{
	return a->mode != b->mode || a->uid != b->uid || a->gid != b->gid || a->size != b->size ||
	       a->mtime_s != b->mtime_s || a->mtime_ns != b->mtime_ns ||
	       (a->target && b->target && strcmp(a->target, b->target));
}

static void compare_files(Out *o, const Tree *a, const Tree *b)
{
	size_t i = 0, j = 0;
	while (i < a->n || j < b->n) {
		int c = i == a->n ? 1 : j == b->n ? -1 : strcmp(a->v[i].path, b->v[j].path);
		if (c < 0) {
			if (a->v[i].ignored)
				o->ignored++;
			else
				file_removed(o, &a->v[i]);
			i++;
		} else if (c > 0) {
			if (b->v[j].ignored)
				o->ignored++;
			else
				file_added(o, b, &b->v[j]);
			j++;
		} else {
			if (a->v[i].ignored || b->v[j].ignored)
				o->ignored += meta_differs(&a->v[i], &b->v[j]);
			else
				file_compare(o, a, &a->v[i], b, &b->v[j]);
			i++;
			j++;
		}
	}
}

/* ---- Packages ------------------------------------------------------------------- */

static void load_pkgs(const Tree *t, InsPkg **p, size_t *n)
{
	char *buf = NULL;
	size_t len = 0;
	bool cut = false;
	*p = NULL;
	*n = 0;
	int r = read_capped(t, "/var/lib/dpkg/status", DPKG_MAX, &buf, &len);
	if (r == -EFBIG)
		truncated = true;
	if (r < 0)
		return;
	if (ins_dpkg_parse(buf, len, p, n, &cut) < 0)
		die("out of memory");
	truncated |= cut;
	free(buf);
}

static void put_packages(InsBuf *o, const Tree *a, const Tree *b)
{
	InsPkg *pa, *pb;
	size_t na, nb;
	load_pkgs(a, &pa, &na);
	load_pkgs(b, &pb, &nb);
	InsBuf add, rem, up;
	ins_buf_init(&add, MAX_OUTPUT);
	ins_buf_init(&rem, MAX_OUTPUT);
	ins_buf_init(&up, MAX_OUTPUT);
	size_t i = 0, j = 0, cadd = 0, crem = 0, cup = 0;
	while (i < na || j < nb) {
		int c = i == na ? 1 : j == nb ? -1 : strcmp(pa[i].name, pb[j].name);
		if (c < 0) {
			ins_buf_puts(&rem, crem++ ? ",{" : "{");
			put_str(&rem, "name", pa[i].name);
			ins_buf_puts(&rem, ",");
			put_str(&rem, "version", pa[i].version);
			ins_buf_puts(&rem, "}");
			i++;
		} else if (c > 0) {
			ins_buf_puts(&add, cadd++ ? ",{" : "{");
			put_str(&add, "name", pb[j].name);
			ins_buf_puts(&add, ",");
			put_str(&add, "version", pb[j].version);
			ins_buf_puts(&add, "}");
			j++;
		} else {
			if (strcmp(pa[i].version, pb[j].version)) {
				ins_buf_puts(&up, cup++ ? ",{" : "{");
				put_str(&up, "name", pb[j].name);
				ins_buf_puts(&up, ",");
				put_str(&up, "from", pa[i].version);
				ins_buf_puts(&up, ",");
				put_str(&up, "to", pb[j].version);
				ins_buf_puts(&up, "}");
			}
			i++;
			j++;
		}
	}
	ins_buf_puts(o, ",\"packages_added\":[");
	ins_buf_put(o, add.p, add.len);
	ins_buf_puts(o, "],\"packages_removed\":[");
	ins_buf_put(o, rem.p, rem.len);
	ins_buf_puts(o, "],\"packages_upgraded\":[");
	ins_buf_put(o, up.p, up.len);
	ins_buf_puts(o, "]");
	truncated |= add.overflow || rem.overflow || up.overflow;
	ins_buf_free(&add);
	ins_buf_free(&rem);
	ins_buf_free(&up);
	ins_pkgs_free(pa, na);
	ins_pkgs_free(pb, nb);
}

/* ---- Services --------------------------------------------------------------------- */

static const char *const unit_dirs[] = {"/etc/systemd/system", "/lib/systemd/system",
					"/usr/lib/systemd/system"};

typedef struct Unit {
	const char *name;
	int side;          /* 0 old, 1 new */
	int kind;          /* 0 file, 1 mask, 2 wanted */
	const char *path;  /* unit file path */
	unsigned prio;     /* index in unit_dirs */
} Unit;

static bool unit_name_ok(const char *n)
{
	static const char *const suf[] = {".service", ".socket", ".timer", ".target", ".path",
					  ".mount", ".automount", ".slice", ".swap", ".device",
					  ".scope"};
	size_t l = strlen(n);
	for (size_t i = 0; i < sizeof(suf) / sizeof(*suf); i++) {
		size_t s = strlen(suf[i]);
		if (l > s && !strcmp(n + l - s, suf[i]))
			return true;
	}
	return false;
}

static void collect_units(const Tree *t, int side, Unit **v, size_t *n, size_t *cap)
{
	for (size_t i = 0; i < t->n; i++) {
		const Ent *e = &t->v[i];
		if (e->ignored)
			continue;
		for (unsigned d = 0; d < 3; d++) {
			size_t dl = strlen(unit_dirs[d]);
			if (strncmp(e->path, unit_dirs[d], dl) || e->path[dl] != '/')
				continue;
			const char *rest = e->path + dl + 1;
			const char *slash = strchr(rest, '/');
			Unit u = {.side = side, .prio = d, .path = e->path};
			if (!slash) {
				if (!unit_name_ok(rest))
					break;
				u.name = rest;
				if (S_ISLNK(e->mode) && !strcmp(e->target, "/dev/null"))
					u.kind = 1;
				else if (S_ISREG(e->mode))
					u.kind = 0;
				else if (S_ISLNK(e->mode)) {
					/* a linked unit (target's name is its own) counts as its file;
					 * an alias (another name) is skipped */
					const char *tb = strrchr(e->target, '/');
					if (strcmp(tb ? tb + 1 : e->target, rest))
						break;
					u.kind = 0;
				} else {
					break;
				}
			} else {
				/* DIR/x.target.wants/NAME or .requires/NAME, a symlink */
				size_t wl = (size_t)(slash - rest);
				const char *name = slash + 1;
				if (strchr(name, '/') || !S_ISLNK(e->mode) || !unit_name_ok(name))
					break;
				if (!((wl > 6 && !strncmp(slash - 6, ".wants", 6)) ||
				      (wl > 9 && !strncmp(slash - 9, ".requires", 9))))
					break;
				u.name = name;
				u.kind = 2;
			}
			if (*n == *cap) {
				*cap = *cap ? *cap * 2 : 256;
				*v = xrealloc(*v, *cap * sizeof(**v));
			}
			(*v)[(*n)++] = u;
			break;
		}
	}
}

static int cmp_unit(const void *x, const void *y)
{
	const Unit *a = x, *b = y;
	int c = strcmp(a->name, b->name);
	return c ? c : a->side != b->side ? a->side - b->side : (int)a->prio - (int)b->prio;
}

/* Whole-file comparison of two unit files (bounded). */
static bool unit_differs(const Tree *a, const char *pa, const Tree *b, const char *pb)
{
	char *x = NULL, *y = NULL;
	size_t lx = 0, ly = 0;
	int ra = read_capped(a, pa, UNIT_MAX, &x, &lx), rb = read_capped(b, pb, UNIT_MAX, &y, &ly);
	bool d = ra != rb || (ra == 0 && (lx != ly || memcmp(x, y, lx)));
	free(x);
	free(y);
	return d;
}

static void put_services(InsBuf *o, const Tree *a, const Tree *b)
{
	Unit *v = NULL;
	size_t n = 0, cap = 0, count = 0;
	collect_units(a, 0, &v, &n, &cap);
	collect_units(b, 1, &v, &n, &cap);
	if (n)
		qsort(v, n, sizeof(*v), cmp_unit);
	ins_buf_puts(o, ",\"services_changed\":[");
	for (size_t i = 0; i < n;) {
		size_t j = i;
		const char *file[2] = {NULL, NULL};
		bool masked[2] = {false, false}, wanted[2] = {false, false};
		for (; j < n && !strcmp(v[j].name, v[i].name); j++) {
			int s = v[j].side;
			if (v[j].kind == 0 && !file[s])
				file[s] = v[j].path; /* sorted by priority: /etc first */
			else if (v[j].kind == 1 && v[j].prio == 0)
				masked[s] = true;
			else if (v[j].kind == 2)
				wanted[s] = true;
		}
		const char *state = NULL;
		int enabled = wanted[1]; /* -1 = null */
		if (masked[0] != masked[1])
			state = masked[1] ? "masked" : "unmasked";
		else if (!file[0] && file[1])
			state = "added";
		else if (file[0] && !file[1])
			state = "removed", enabled = -1;
		else if (wanted[0] != wanted[1])
			state = wanted[1] ? "enabled" : "disabled";
		else if (file[0] && file[1] && unit_differs(a, file[0], b, file[1]))
			state = "modified";
		if (state) {
			ins_buf_puts(o, count++ ? ",{" : "{");
			put_str(o, "name", v[i].name);
			ins_buf_printf(o, ",\"enabled\":%s,\"state\":\"%s\"",
				       enabled < 0 ? "null" : enabled ? "true" : "false", state);
			if (file[1]) {
				ins_buf_puts(o, ",");
				put_str(o, "unit_path", file[1]);
			}
			ins_buf_puts(o, "}");
		}
		i = j;
	}
	ins_buf_puts(o, "]");
	free(v);
}

/* ---- Users and groups ---------------------------------------------------------------- */

static void load_accounts(Tree *t)
{
	static const char *const files[] = {"/etc/passwd", "/etc/group", "/etc/shadow"};
	for (int k = 0; k < 3; k++) {
		char *buf = NULL;
		size_t len = 0;
		bool cut = false;
		int r = read_capped(t, files[k], ACCOUNTS_MAX, &buf, &len);
		if (r == -EFBIG)
			truncated = true;
		if (r < 0)
			continue;
		if (k == 0)
			r = ins_passwd_parse(buf, len, &t->users, &t->n_users, &cut);
		else if (k == 1)
			r = ins_group_parse(buf, len, &t->groups, &t->n_groups, &cut);
		else
			r = ins_shadow_parse(buf, len, &t->shadow, &t->n_shadow, &cut);
		if (r < 0)
			die("out of memory");
		truncated |= cut;
		free(buf);
	}
}

static bool is_member(const InsGroup *g, const char *user)
{
	for (size_t i = 0; i < g->n_members; i++)
		if (!strcmp(g->members[i], user))
			return true;
	return false;
}

/* JSON array of the groups listing user as a member. */
static void user_groups(InsBuf *o, const Tree *t, const char *user)
{
	size_t k = 0;
	ins_buf_puts(o, "[");
	for (size_t i = 0; i < t->n_groups; i++)
		if (is_member(&t->groups[i], user)) {
			if (k++)
				ins_buf_puts(o, ",");
			ins_json_str(o, t->groups[i].name, strlen(t->groups[i].name));
		}
	ins_buf_puts(o, "]");
}

static InsPw pw_of(const Tree *t, const char *user)
{
	for (size_t i = 0; i < t->n_shadow; i++)
		if (!strcmp(t->shadow[i].name, user))
			return t->shadow[i].pw;
	return INS_PW_NONE;
}

static void change_str(InsBuf *o, size_t *k, const char *key, const char *from, const char *to)
{
	if (!strcmp(from, to))
		return;
	ins_buf_puts(o, (*k)++ ? "," : "");
	put_key(o, key);
	ins_buf_puts(o, "{");
	put_str(o, "from", from);
	ins_buf_puts(o, ",");
	put_str(o, "to", to);
	ins_buf_puts(o, "}");
}

static void change_num(InsBuf *o, size_t *k, const char *key, uint32_t from, uint32_t to)
{
	if (from == to)
		return;
	ins_buf_puts(o, (*k)++ ? "," : "");
	ins_buf_printf(o, "\"%s\":{\"from\":%u,\"to\":%u}", key, from, to);
}

static void put_users(InsBuf *o, const Tree *a, const Tree *b)
{
	InsBuf add, rem, chg;
	ins_buf_init(&add, MAX_OUTPUT);
	ins_buf_init(&rem, MAX_OUTPUT);
	ins_buf_init(&chg, MAX_OUTPUT);
	size_t i = 0, j = 0, cadd = 0, crem = 0, cchg = 0;
	while (i < a->n_users || j < b->n_users) {
		int c = i == a->n_users ? 1 : j == b->n_users ? -1 : strcmp(a->users[i].name, b->users[j].name);
		if (c < 0) {
			ins_buf_puts(&rem, crem++ ? ",{" : "{");
			put_str(&rem, "name", a->users[i].name);
			ins_buf_puts(&rem, "}");
			i++;
		} else if (c > 0) {
			const InsUser *u = &b->users[j];
			ins_buf_puts(&add, cadd++ ? ",{" : "{");
			put_str(&add, "name", u->name);
			ins_buf_printf(&add, ",\"uid\":%u,\"gid\":%u,", u->uid, u->gid);
			put_str(&add, "home", u->home);
			ins_buf_puts(&add, ",");
			put_str(&add, "shell", u->shell);
			ins_buf_puts(&add, ",");
			put_str(&add, "gecos", u->gecos);
			ins_buf_puts(&add, ",\"groups\":");
			user_groups(&add, b, u->name);
			ins_buf_printf(&add, ",\"password\":\"%s\",\"system\":%s}",
				       ins_pw_name(pw_of(b, u->name)), u->uid < 1000 ? "true" : "false");
			j++;
		} else {
			const InsUser *x = &a->users[i], *y = &b->users[j];
			InsBuf d, ga, gb;
			ins_buf_init(&d, 1u << 20);
			ins_buf_init(&ga, 1u << 20);
			ins_buf_init(&gb, 1u << 20);
			size_t k = 0;
			change_num(&d, &k, "uid", x->uid, y->uid);
			change_num(&d, &k, "gid", x->gid, y->gid);
			change_str(&d, &k, "home", x->home, y->home);
			change_str(&d, &k, "shell", x->shell, y->shell);
			change_str(&d, &k, "gecos", x->gecos, y->gecos);
			user_groups(&ga, a, x->name);
			user_groups(&gb, b, y->name);
			if (strcmp(ga.p, gb.p)) {
				ins_buf_puts(&d, k++ ? ",\"groups\":{\"from\":" : "\"groups\":{\"from\":");
				ins_buf_put(&d, ga.p, ga.len);
				ins_buf_puts(&d, ",\"to\":");
				ins_buf_put(&d, gb.p, gb.len);
				ins_buf_puts(&d, "}");
			}
			change_str(&d, &k, "password", ins_pw_name(pw_of(a, x->name)),
				   ins_pw_name(pw_of(b, y->name)));
			if (k) {
				ins_buf_puts(&chg, cchg++ ? ",{" : "{");
				put_str(&chg, "name", y->name);
				ins_buf_puts(&chg, ",\"changes\":{");
				ins_buf_put(&chg, d.p, d.len);
				ins_buf_puts(&chg, "}}");
			}
			truncated |= d.overflow;
			ins_buf_free(&d);
			ins_buf_free(&ga);
			ins_buf_free(&gb);
			i++;
			j++;
		}
	}
	ins_buf_puts(o, ",\"users_added\":[");
	ins_buf_put(o, add.p, add.len);
	ins_buf_puts(o, "],\"users_removed\":[");
	ins_buf_put(o, rem.p, rem.len);
	ins_buf_puts(o, "],\"users_changed\":[");
	ins_buf_put(o, chg.p, chg.len);
	ins_buf_puts(o, "]");
	truncated |= add.overflow || rem.overflow || chg.overflow;
	ins_buf_free(&add);
	ins_buf_free(&rem);
	ins_buf_free(&chg);
}

static void members_json(InsBuf *o, const InsGroup *g)
{
	ins_buf_puts(o, "[");
	for (size_t i = 0; i < g->n_members; i++) {
		if (i)
			ins_buf_puts(o, ",");
		ins_json_str(o, g->members[i], strlen(g->members[i]));
	}
	ins_buf_puts(o, "]");
}

static void put_groups(InsBuf *o, const Tree *a, const Tree *b)
{
	InsBuf add, rem, chg;
	ins_buf_init(&add, MAX_OUTPUT);
	ins_buf_init(&rem, MAX_OUTPUT);
	ins_buf_init(&chg, MAX_OUTPUT);
	size_t i = 0, j = 0, cadd = 0, crem = 0, cchg = 0;
	while (i < a->n_groups || j < b->n_groups) {
		int c = i == a->n_groups ? 1 : j == b->n_groups ? -1 : strcmp(a->groups[i].name, b->groups[j].name);
		if (c < 0) {
			ins_buf_puts(&rem, crem++ ? ",{" : "{");
			put_str(&rem, "name", a->groups[i].name);
			ins_buf_puts(&rem, "}");
			i++;
		} else if (c > 0) {
			const InsGroup *g = &b->groups[j];
			ins_buf_puts(&add, cadd++ ? ",{" : "{");
			put_str(&add, "name", g->name);
			ins_buf_printf(&add, ",\"gid\":%u,\"members\":", g->gid);
			members_json(&add, g);
			ins_buf_puts(&add, "}");
			j++;
		} else {
			const InsGroup *x = &a->groups[i], *y = &b->groups[j];
			InsBuf ma, mb;
			ins_buf_init(&ma, MAX_OUTPUT);
			ins_buf_init(&mb, MAX_OUTPUT);
			members_json(&ma, x);
			members_json(&mb, y);
			bool mch = strcmp(ma.p, mb.p) != 0;
			if (mch || x->gid != y->gid) {
				ins_buf_puts(&chg, cchg++ ? ",{" : "{");
				put_str(&chg, "name", y->name);
				ins_buf_puts(&chg, ",\"changes\":{");
				size_t k = 0;
				change_num(&chg, &k, "gid", x->gid, y->gid);
				if (mch) {
					ins_buf_puts(&chg, k++ ? ",\"members\":{\"from\":" : "\"members\":{\"from\":");
					ins_buf_put(&chg, ma.p, ma.len);
					ins_buf_puts(&chg, ",\"to\":");
					ins_buf_put(&chg, mb.p, mb.len);
					ins_buf_puts(&chg, "}");
				}
				ins_buf_puts(&chg, "}}");
			}
			ins_buf_free(&ma);
			ins_buf_free(&mb);
			i++;
			j++;
		}
	}
	ins_buf_puts(o, ",\"groups_added\":[");
	ins_buf_put(o, add.p, add.len);
	ins_buf_puts(o, "],\"groups_removed\":[");
	ins_buf_put(o, rem.p, rem.len);
	ins_buf_puts(o, "],\"groups_changed\":[");
	ins_buf_put(o, chg.p, chg.len);
	ins_buf_puts(o, "]");
	truncated |= add.overflow || rem.overflow || chg.overflow;
	ins_buf_free(&add);
	ins_buf_free(&rem);
	ins_buf_free(&chg);
}

/* ---- main ------------------------------------------------------------------------------ */

static void write_all(const void *p, size_t len)
{
	for (size_t off = 0; off < len;) {
		ssize_t k = write(1, (const char *)p + off, len - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			die("write: %m");
		off += (size_t)k;
	}
}

static void open_tree(Tree *t, const char *root)
{
	memset(t, 0, sizeof(*t));
	t->root = root;
	t->rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->rootfd < 0)
		die("%s: %m", root);
	struct stat st;
	if (fstat(t->rootfd, &st) < 0)
		die("%s: %m", root);
	t->dev = st.st_dev;
	char path[MAX_PATH] = "/";
	walk(t, t->rootfd, path, 1, 0, false);
	if (t->n)
		qsort(t->v, t->n, sizeof(*t->v), cmp_ent);
	load_accounts(t);
}

static size_t parse_size(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v > (1ull << 30))
		die("bad size: %s", s);
	return (size_t)v;
}

static void add_ignore_file(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		die("%s: %m", path);
	char buf[1u << 16];
	size_t n = fread(buf, 1, sizeof(buf), f);
	bool more = !feof(f);
	fclose(f);
	if (more)
		die("%s: too large", path);
	if (ins_ignore_add_text(&ignore, buf, n) < 0)
		die("%s: bad pattern (at most %d patterns of %d bytes)", path, INS_MAX_PATTERNS,
		    INS_MAX_PATTERN_LEN);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"old", required_argument, NULL, 'o'},
		{"new", required_argument, NULL, 'n'},
		{"ignore", required_argument, NULL, 'i'},
		{"ignore-add", required_argument, NULL, 'a'},
		{"ignore-pattern", required_argument, NULL, 'p'},
		{"max-diff", required_argument, NULL, 'd'},
		{"max-content", required_argument, NULL, 'c'},
		{NULL, 0, NULL, 0},
	};
	const char *old = NULL, *new = NULL, *replace = NULL;
	const char *adds[16];
	size_t n_adds = 0;
	const char *pats[INS_MAX_PATTERNS];
	size_t n_pats = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			old = optarg;
			break;
		case 'n':
			new = optarg;
			break;
		case 'i':
			replace = optarg;
			break;
		case 'a':
			if (n_adds == 16)
				die("too many --ignore-add");
			adds[n_adds++] = optarg;
			break;
		case 'p':
			if (n_pats == INS_MAX_PATTERNS)
				die("too many --ignore-pattern");
			pats[n_pats++] = optarg;
			break;
		case 'd':
			max_diff = parse_size(optarg);
			break;
		case 'c':
			max_content = parse_size(optarg);
			break;
		default:
			fprintf(stderr, "usage: fluid-inspect --old DIR --new DIR [--ignore FILE] "
					"[--ignore-add FILE] [--ignore-pattern PAT] [--max-diff BYTES] "
					"[--max-content BYTES]\n");
			return 2;
		}
	}
	if (!old || !new || optind != argc)
		die("--old and --new are required");
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (replace)
		add_ignore_file(replace);
	else
		for (size_t i = 0; ins_default_ignore[i]; i++)
			if (ins_ignore_add(&ignore, ins_default_ignore[i]) < 0)
				die("out of memory");
	for (size_t i = 0; i < n_adds; i++)
		add_ignore_file(adds[i]);
	for (size_t i = 0; i < n_pats; i++)
		if (ins_ignore_add(&ignore, pats[i]) < 0)
			die("bad --ignore-pattern");

	static Tree a, b;
	open_tree(&a, old);
	open_tree(&b, new);

	Out o;
	memset(&o, 0, sizeof(o));
	ins_buf_init(&o.added, MAX_OUTPUT);
	ins_buf_init(&o.removed, MAX_OUTPUT);
	ins_buf_init(&o.modified, MAX_OUTPUT);
	compare_files(&o, &a, &b);

	/* The file sections are written as they are (no second copy of up to
	 * 48 MiB in the inspector's small RAM); the rest is built after them. */
	if (o.added.overflow || o.removed.overflow || o.modified.overflow)
		die("file lists over their bound"); /* budget() keeps them below it */
	write_all("{\"files_added\":[", strlen("{\"files_added\":["));
	write_all(o.added.p, o.added.len);
	write_all("],\"files_removed\":[", strlen("],\"files_removed\":["));
	write_all(o.removed.p, o.removed.len);
	write_all("],\"files_modified\":[", strlen("],\"files_modified\":["));
	write_all(o.modified.p, o.modified.len);
	ins_buf_free(&o.added);
	ins_buf_free(&o.removed);
	ins_buf_free(&o.modified);
	InsBuf out;
	ins_buf_init(&out, 8u << 20);
	ins_buf_puts(&out, "]");
	put_packages(&out, &a, &b);
	put_services(&out, &a, &b);
	put_users(&out, &a, &b);
	put_groups(&out, &a, &b);
	ins_buf_printf(&out, ",\"ignored\":{\"count\":%llu,\"patterns\":[",
		       (unsigned long long)o.ignored);
	for (size_t i = 0; i < ignore.n; i++) {
		if (i)
			ins_buf_puts(&out, ",");
		ins_json_str(&out, ignore.pats[i], strlen(ignore.pats[i]));
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long long ms = (t1.tv_sec - t0.tv_sec) * 1000LL + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	ins_buf_printf(&out, "]},\"stats\":{\"old_entries\":%zu,\"new_entries\":%zu,", a.n, b.n);
	ins_buf_printf(&out, "\"compared_bytes\":%llu,\"elapsed_ms\":%lld},",
		       (unsigned long long)compared_bytes, ms);
	if (out.overflow)
		die("output too large");
	ins_buf_printf(&out, "\"truncated\":%s}\n", truncated ? "true" : "false");
	if (out.overflow)
		die("output too large");
	write_all(out.p, out.len);
	return 0;
}
