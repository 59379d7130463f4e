// SPDX-License-Identifier: MIT
/*
 * inspect-lib: the pure parts of fluid-inspect (see inspect.h):
 * base64, bounded buffer + JSON escaping, ignore globs, a unified line diff
 * (Myers' O(ND) greedy algorithm on what remains after the common prefix
 * and suffix, with a bound on D), and parsers for dpkg status and
 * passwd/group/shadow.
 *
 * DESIGN: no global state, no I/O; links into a static binary with nothing
 * but libc. Every input is hostile: each loop is bounded by the input's
 * length or by a named limit, and each allocation by a limit too.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inspect.h"

/* ---- Output buffer ----------------------------------------------------------- */

void ins_buf_init(InsBuf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void ins_buf_free(InsBuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void ins_buf_put(InsBuf *b, const void *data, size_t len)
{
	if (b->overflow)
		return;
	if (len > b->max - b->len) {
		b->overflow = true;
		return;
	}
	if (b->len + len + 1 > b->cap) {
		size_t nc = b->cap ? b->cap : 4096;
		while (nc < b->len + len + 1)
			nc *= 2;
		char *np = realloc(b->p, nc);
		if (!np) {
			b->overflow = true;
			return;
		}
		b->p = np;
		b->cap = nc;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = 0;
}

void ins_buf_puts(InsBuf *b, const char *s) { ins_buf_put(b, s, strlen(s)); }

void ins_buf_printf(InsBuf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->overflow = true; /* only short numeric formats are used */
		return;
	}
	ins_buf_put(b, tmp, (size_t)n);
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
	unsigned c = s[0];
	if (c < 0x80)
		return 1;
	size_t n;
	unsigned cp;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

bool ins_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		size_t n = utf8_seq(p + i, len - i);
		if (!n)
			return false;
		i += n;
	}
	return true;
}

bool ins_json_str(InsBuf *b, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	bool valid = true;
	ins_buf_put(b, "\"", 1);
	size_t run = 0; /* start of a run of bytes copied as they are */
	for (size_t i = 0; i < len;) {
		unsigned c = p[i];
		const char *esc = NULL;
		char u[8];
		size_t n = 1;
		if (c == '"')
			esc = "\\\"";
		else if (c == '\\')
			esc = "\\\\";
		else if (c == '\n')
			esc = "\\n";
		else if (c == '\t')
			esc = "\\t";
		else if (c == '\r')
			esc = "\\r";
		else if (c < 0x20 || c == 0x7f) {
			snprintf(u, sizeof(u), "\\u%04x", c);
			esc = u;
		} else if (c >= 0x80) {
			n = utf8_seq(p + i, len - i);
			if (!n) {
				esc = "\xef\xbf\xbd"; /* U+FFFD */
				valid = false;
				n = 1;
			}
		}
		if (esc) {
			ins_buf_put(b, s + run, i - run);
			ins_buf_puts(b, esc);
			run = i + n;
		}
		i += n;
	}
	ins_buf_put(b, s + run, len - run);
	ins_buf_put(b, "\"", 1);
	return valid;
}

void ins_base64(InsBuf *b, const void *data, size_t len)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const uint8_t *p = data;
	char out[4 * 256];
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = i + 1 < len ? tab[v >> 6 & 63] : '=';
		out[o++] = i + 2 < len ? tab[v & 63] : '=';
		if (o == sizeof(out)) {
			ins_buf_put(b, out, o);
			o = 0;
		}
	}
	ins_buf_put(b, out, o);
}

/* ---- Globs ----------------------------------------------------------------------- */

static bool glob_core(const char *p, const char *s)
{
	const char *sp = NULL, *ss = NULL; /* last '*': pattern after it, string it reached */
	const char *dp = NULL, *ds = NULL; /* last '**' */
	while (*s) {
		if (p[0] == '*' && p[1] == '*') {
			while (*p == '*')
				p++;
			dp = p;
			ds = s;
			sp = NULL;
			continue;
		}
		if (*p == '*') {
			p++;
			sp = p;
			ss = s;
			continue;
		}
		if (*p && (*p == *s || (*p == '?' && *s != '/'))) {
			p++;
			s++;
			continue;
		}
		if (sp && *ss != '/') { /* let the last '*' take one more character */
			s = ++ss;
			p = sp;
			continue;
		}
		if (dp) { /* let the last '**' take one more character */
			s = ++ds;
			p = dp;
			sp = NULL;
			continue;
		}
		return false;
	}
	while (*p == '*')
		p++;
	return !*p;
}

bool ins_glob_match(const char *pattern, const char *path)
{
	if (!strchr(pattern, '/')) {
		const char *slash = strrchr(path, '/');
		return glob_core(pattern, slash ? slash + 1 : path);
	}
	/* quick reject on the literal prefix */
	size_t i = 0;
	for (; pattern[i] && pattern[i] != '*' && pattern[i] != '?'; i++)
		if (pattern[i] != path[i])
			return false;
	return glob_core(pattern + i, path + i);
}

const char *const ins_default_ignore[] = {
	"/var/log/**", "/var/cache/**", "/var/lib/apt/lists/**", "/tmp/**", "/var/tmp/**",
	"/run/**", "/proc/**", "/sys/**", "/dev/**", "/lost+found", "/lost+found/**",
	"/etc/machine-id", "/var/lib/dbus/machine-id", "/etc/hostname", "/etc/hosts",
	"/etc/resolv.conf", "/etc/adjtime", "/var/lib/systemd/random-seed",
	"/var/lib/systemd/timers/**", "/var/lib/systemd/timesync/**", "/var/lib/dhcp/**",
	"/var/lib/dhclient/**", "/etc/ssh/ssh_host_*", "/root/.bash_history",
	"/home/*/.bash_history", "/root/.lesshst", "/root/.viminfo", "/root/.cache/**",
	"/var/lib/dpkg/status-old", "/var/lib/dpkg/diversions-old",
	"/var/lib/dpkg/statoverride-old", "/var/backups/**", "/etc/ld.so.cache",
	"/var/lib/apt/extended_states", "/var/lib/apt/periodic/**", "/etc/passwd-",
	"/etc/group-", "/etc/shadow-", "/etc/gshadow-", "/etc/subuid-", "/etc/subgid-",
	"*.pyc", "**/__pycache__", "**/__pycache__/**", "*.swp", NULL,
};

int ins_ignore_add(InsIgnore *ig, const char *pattern)
{
	size_t len = strlen(pattern);
	if (!len || len > INS_MAX_PATTERN_LEN || ig->n >= INS_MAX_PATTERNS)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)pattern[i] < 0x20)
			return -EINVAL;
	if (ig->n == ig->cap) {
		size_t nc = ig->cap ? ig->cap * 2 : 64;
		char **np = realloc(ig->pats, nc * sizeof(*np));
		if (!np)
			return -ENOMEM;
		ig->pats = np;
		ig->cap = nc;
	}
	if (!(ig->pats[ig->n] = strdup(pattern)))
		return -ENOMEM;
	ig->n++;
	return 0;
}

int ins_ignore_add_text(InsIgnore *ig, const char *text, size_t len)
{
	size_t i = 0;
	while (i < len) {
		size_t e = i;
		while (e < len && text[e] != '\n')
			e++;
		size_t s = i, t = e;
		while (s < t && (text[s] == ' ' || text[s] == '\t'))
			s++;
		while (t > s && (text[t - 1] == ' ' || text[t - 1] == '\t' || text[t - 1] == '\r'))
			t--;
		if (t > s && text[s] != '#') {
			char pat[INS_MAX_PATTERN_LEN + 1];
			if (t - s > INS_MAX_PATTERN_LEN || memchr(text + s, 0, t - s))
				return -EINVAL;
			memcpy(pat, text + s, t - s);
			pat[t - s] = 0;
			int r = ins_ignore_add(ig, pat);
			if (r < 0)
				return r;
		}
		i = e + 1;
	}
	return 0;
}

bool ins_ignored(const InsIgnore *ig, const char *path)
{
	for (size_t i = 0; i < ig->n; i++)
		if (ins_glob_match(ig->pats[i], path))
			return true;
	return false;
}

void ins_ignore_free(InsIgnore *ig)
{
	for (size_t i = 0; i < ig->n; i++)
		free(ig->pats[i]);
	free(ig->pats);
	memset(ig, 0, sizeof(*ig));
}

/* ---- Line diff ----------------------------------------------------------------------- */

typedef struct Line {
	const char *p;
	size_t len; /* including the '\n' if there is one */
	uint64_t hash;
} Line;

static int split_lines(const char *s, size_t len, Line **ret, size_t *ret_n)
{
	size_t n = 0, cap = 0;
	Line *v = NULL;
	for (size_t i = 0; i < len;) {
		const char *nl = memchr(s + i, '\n', len - i);
		size_t e = nl ? (size_t)(nl - s) + 1 : len;
		if (e - i > INS_DIFF_MAX_LINE || n >= INS_DIFF_MAX_LINES) {
			free(v);
			return -E2BIG;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			Line *nv = realloc(v, cap * sizeof(*nv));
			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
		}
		uint64_t h = 1469598103934665603ull; /* FNV-1a */
		for (size_t k = i; k < e; k++)
			h = (h ^ (unsigned char)s[k]) * 1099511628211ull;
		v[n++] = (Line){s + i, e - i, h};
		i = e;
	}
	if (!v && !(v = malloc(sizeof(*v)))) /* never NULL: callers offset into it */
		return -ENOMEM;
	*ret = v;
	*ret_n = n;
	return 0;
}

static bool line_eq(const Line *a, const Line *b)
{
	return a->hash == b->hash && a->len == b->len && !memcmp(a->p, b->p, a->len);
}

/* Edit ops: ' ' keep, '-' delete from a, '+' insert from b. */
typedef struct Ops {
	char *op;
	size_t n, cap;
} Ops;

static int ops_push(Ops *o, char c, size_t count)
{
	if (!count)
		return 0;
	if (o->n + count > o->cap) {
		size_t nc = o->cap ? o->cap : 1024;
		while (nc < o->n + count)
			nc *= 2;
		char *np = realloc(o->op, nc);
		if (!np)
			return -ENOMEM;
		o->op = np;
		o->cap = nc;
	}
	memset(o->op + o->n, c, count);
	o->n += count;
	return 0;
}

/*
 * Myers' greedy algorithm on a[0..n) vs b[0..m), keeping each round's V
 * to walk the path back. Fails with -E2BIG when D exceeds max_d.
 */
static int myers(const Line *a, size_t n, const Line *b, size_t m, size_t max_d, Ops *out)
{
	size_t maxd = n + m < max_d ? n + m : max_d;
	long off = (long)maxd + 1;
	size_t width = 2 * maxd + 3;
	/* history[d] = copy of V's band [-d, d] after round d */
	long **hist = calloc(maxd + 1, sizeof(*hist));
	long *v = calloc(width, sizeof(*v));
	int r = -E2BIG;
	long dfound = -1;
	if (!hist || !v) {
		r = -ENOMEM;
		goto done;
	}
	v[off + 1] = 0;
	for (long d = 0; d <= (long)maxd; d++) {
		for (long k = -d; k <= d; k += 2) {
			long x;
			if (k == -d || (k != d && v[off + k - 1] < v[off + k + 1]))
				x = v[off + k + 1];
			else
				x = v[off + k - 1] + 1;
			long y = x - k;
			while (x < (long)n && y < (long)m && line_eq(&a[x], &b[y])) {
				x++;
				y++;
			}
			v[off + k] = x;
			if (x >= (long)n && y >= (long)m) {
				dfound = d;
				break;
			}
		}
		hist[d] = malloc((size_t)(2 * d + 1) * sizeof(long));
		if (!hist[d]) {
			r = -ENOMEM;
			goto done;
		}
		memcpy(hist[d], v + off - d, (size_t)(2 * d + 1) * sizeof(long));
		if (dfound >= 0)
			break;
	}
	if (dfound < 0)
		goto done;
	/* Walk back from (n, m), collecting ops in reverse. */
	{
		size_t total = n + m;
		char *rev = malloc(total ? total : 1);
		size_t nr = 0;
		if (!rev) {
			r = -ENOMEM;
			goto done;
		}
		long x = (long)n, y = (long)m;
		for (long d = dfound; d >= 0; d--) {
			long k = x - y;
			long *vd = hist[d]; /* index k -> vd[k + d] */
			if (d == 0) {
				while (x > 0 && y > 0) {
					rev[nr++] = ' ';
					x--;
					y--;
				}
				break;
			}
			long *vp = hist[d - 1]; /* index k -> vp[k + d - 1] */
			long pk;
			if (k == -d || (k != d && vp[k - 1 + d - 1] < vp[k + 1 + d - 1]))
				pk = k + 1;
			else
				pk = k - 1;
			long px = vp[pk + d - 1], py = px - pk;
			(void)vd;
			while (x > px && y > py && x > 0 && y > 0) {
				rev[nr++] = ' ';
				x--;
				y--;
			}
			if (pk == k + 1) {
				rev[nr++] = '+';
				y--;
			} else {
				rev[nr++] = '-';
				x--;
			}
		}
		r = 0;
		for (size_t i = nr; i-- > 0 && r == 0;)
			r = ops_push(out, rev[i], 1);
		free(rev);
	}
done:
	if (hist)
		for (size_t d = 0; d <= maxd; d++)
			free(hist[d]);
	free(hist);
	free(v);
	return r;
}

static void put_line(InsBuf *o, char c, const Line *l)
{
	ins_buf_put(o, &c, 1);
	bool nl = l->len && l->p[l->len - 1] == '\n';
	ins_buf_put(o, l->p, l->len);
	if (!nl)
		ins_buf_puts(o, "\n\\ No newline at end of file\n");
}

static void put_range(InsBuf *o, char c, size_t start, size_t count)
{
	if (count == 1)
		ins_buf_printf(o, "%c%zu", c, start + 1);
	else
		ins_buf_printf(o, "%c%zu,%zu", c, count ? start + 1 : start, count);
}

int ins_unified_diff(const char *a, size_t alen, const char *b, size_t blen, const char *path,
		     size_t max_out, InsBuf *out, bool *ret_truncated)
{
	Line *la = NULL, *lb = NULL;
	size_t na = 0, nb = 0;
	Ops ops = {0};
	int r = split_lines(a, alen, &la, &na);
	if (r < 0)
		return r;
	if ((r = split_lines(b, blen, &lb, &nb)) < 0)
		goto done;
	size_t pre = 0;
	while (pre < na && pre < nb && line_eq(&la[pre], &lb[pre]))
		pre++;
	size_t suf = 0;
	while (suf < na - pre && suf < nb - pre && line_eq(&la[na - 1 - suf], &lb[nb - 1 - suf]))
		suf++;
	*ret_truncated = false;
	if (pre == na && pre == nb)
		goto done; /* identical */
	if ((r = ops_push(&ops, ' ', pre)) < 0)
		goto done;
	r = myers(la + pre, na - pre - suf, lb + pre, nb - pre - suf, INS_DIFF_MAX_EDIT, &ops);
	if (r == -E2BIG) /* too different: replace the middle whole (correct, not minimal) */
		r = ops_push(&ops, '-', na - pre - suf) ?: ops_push(&ops, '+', nb - pre - suf);
	if (r < 0 || (r = ops_push(&ops, ' ', suf)) < 0)
		goto done;

	InsBuf o;
	ins_buf_init(&o, max_out);
	ins_buf_puts(&o, "--- a");
	ins_buf_puts(&o, path);
	ins_buf_puts(&o, "\n+++ b");
	ins_buf_puts(&o, path);
	ins_buf_puts(&o, "\n");
	const size_t ctx = 3;
	size_t i = 0;
	/* ai[i]/bi[i]: lines of a/b before op i, computed as we go */
	while (i < ops.n && !o.overflow) {
		while (i < ops.n && ops.op[i] == ' ')
			i++;
		if (i == ops.n)
			break;
		size_t first = i, last = i; /* first and last change of this hunk */
		for (size_t j = i; j < ops.n; j++) {
			if (ops.op[j] != ' ') {
				last = j;
				continue;
			}
			if (j - last > 2 * ctx)
				break;
		}
		size_t hs = first > ctx ? first - ctx : 0;
		size_t he = last + 1 + ctx < ops.n ? last + 1 + ctx : ops.n;
		size_t as = 0, bs = 0, ac = 0, bc = 0;
		for (size_t j = 0; j < hs; j++) {
			as += ops.op[j] != '+';
			bs += ops.op[j] != '-';
		}
		for (size_t j = hs; j < he; j++) {
			ac += ops.op[j] != '+';
			bc += ops.op[j] != '-';
		}
		ins_buf_puts(&o, "@@ ");
		put_range(&o, '-', as, ac);
		ins_buf_puts(&o, " ");
		put_range(&o, '+', bs, bc);
		ins_buf_puts(&o, " @@\n");
		size_t x = as, y = bs;
		for (size_t j = hs; j < he; j++) {
			char c = ops.op[j];
			if (c == ' ') {
				put_line(&o, ' ', &la[x]);
				x++;
				y++;
			} else if (c == '-') {
				put_line(&o, '-', &la[x++]);
			} else {
				put_line(&o, '+', &lb[y++]);
			}
		}
		i = he;
	}
	if (o.overflow) {
		/* keep what fit, cut at the last complete line */
		*ret_truncated = true;
		size_t keep = o.len;
		while (keep && o.p[keep - 1] != '\n')
			keep--;
		ins_buf_put(out, o.p, keep);
	} else {
		ins_buf_put(out, o.p, o.len);
	}
	ins_buf_free(&o);
	r = 0;
done:
	free(ops.op);
	free(la);
	free(lb);
	return r;
}

/* ---- Line-oriented parsers ------------------------------------------------------------ */

static char *dup_n(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = 0;
	}
	return p;
}

/* A name or value we are willing to keep: printable, no NUL, bounded. */
static bool printable(const char *s, size_t n, size_t max, bool allow_space)
{
	if (n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || (!allow_space && c == ' '))
			return false;
	}
	return true;
}

static bool parse_u32(const char *s, size_t n, uint32_t *ret)
{
	if (!n || n > 10)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > 0xfffffffeull)
		return false;
	*ret = (uint32_t)v;
	return true;
}

/* Splits s[0..n) on sep into at most max fields; returns the count (max+1 = too many). */
static size_t split(const char *s, size_t n, char sep, const char **f, size_t *fl, size_t max)
{
	size_t k = 0, st = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == sep) {
			if (k == max)
				return max + 1;
			f[k] = s + st;
			fl[k] = i - st;
			k++;
			st = i + 1;
		}
	}
	return k;
}

static void trim(const char **s, size_t *n)
{
	while (*n && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*n)--;
	}
	while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t' || (*s)[*n - 1] == '\r'))
		(*n)--;
}

/* Debian policy: package and architecture names are [a-z0-9+.-]. */
static bool pkg_name_ok(const char *s, size_t n, size_t max)
{
	if (!n || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '+' ||
		      s[i] == '.' || s[i] == '-'))
			return false;
	return true;
}

typedef struct PkgTmp {
	InsPkg p;
	char *arch;
	size_t seq;
} PkgTmp;

static int cmp_pkgtmp(const void *x, const void *y)
{
	const PkgTmp *a = x, *b = y;
	int c = strcmp(a->p.name, b->p.name);
	if (!c)
		c = strcmp(a->arch, b->arch);
	return c ? c : (a->seq > b->seq) - (a->seq < b->seq);
}

static int cmp_pkg(const void *x, const void *y)
{
	return strcmp(((const InsPkg *)x)->name, ((const InsPkg *)y)->name);
}

int ins_dpkg_parse(const char *buf, size_t len, InsPkg **ret, size_t *ret_n, bool *ret_truncated)
{
	PkgTmp *v = NULL;
	size_t n = 0, cap = 0;
	const char *pk = NULL, *ver = NULL, *st = NULL, *ar = NULL;
	size_t pkl = 0, verl = 0, stl = 0, arl = 0;
	bool bad = false;
	int r = 0;
	*ret_truncated = false;
	for (size_t i = 0; i <= len;) {
		size_t e = i;
		while (e < len && buf[e] != '\n')
			e++;
		const char *l = buf + i;
		size_t ll = e - i;
		if (ll && l[ll - 1] == '\r')
			ll--;
		bool end_par = ll == 0 || i >= len;
		if (!end_par && l[0] != ' ' && l[0] != '\t') {
			const char *colon = memchr(l, ':', ll);
			if (colon) {
				size_t kl = (size_t)(colon - l);
				const char *val = colon + 1;
				size_t vl = ll - kl - 1;
				trim(&val, &vl);
				if (vl > INS_MAX_FIELD)
					bad = true;
				else if (kl == 7 && !strncasecmp(l, "Package", 7))
					pk = val, pkl = vl;
				else if (kl == 7 && !strncasecmp(l, "Version", 7))
					ver = val, verl = vl;
				else if (kl == 6 && !strncasecmp(l, "Status", 6))
					st = val, stl = vl;
				else if (kl == 12 && !strncasecmp(l, "Architecture", 12))
					ar = val, arl = vl;
			}
		}
		if (end_par) {
			if (!bad && pk && pkl && ver && verl && st && stl == 20 &&
			    !memcmp(st, "install ok installed", 20) && pkg_name_ok(pk, pkl, 255) &&
			    printable(ver, verl, 255, false) && (!ar || pkg_name_ok(ar, arl, 64))) {
				if (n >= INS_MAX_RECORDS) {
					*ret_truncated = true;
					break;
				}
				if (n == cap) {
					cap = cap ? cap * 2 : 256;
					PkgTmp *nv = realloc(v, cap * sizeof(*nv));
					if (!nv) {
						r = -ENOMEM;
						break;
					}
					v = nv;
				}
				v[n] = (PkgTmp){{dup_n(pk, pkl), dup_n(ver, verl)},
						ar ? dup_n(ar, arl) : dup_n("", 0), n};
				n++;
				if (!v[n - 1].p.name || !v[n - 1].p.version || !v[n - 1].arch) {
					r = -ENOMEM;
					break;
				}
			}
			pk = ver = st = ar = NULL;
			pkl = verl = stl = arl = 0;
			bad = false;
		}
		if (i >= len)
			break;
		i = e < len ? e + 1 : len; /* a last line without '\n' still ends its paragraph */
	}
	if (r == 0 && n)
		qsort(v, n, sizeof(*v), cmp_pkgtmp);
	/* A second architecture of one name becomes name:arch; exact duplicates go. */
	size_t w = 0;
	for (size_t i = 0; r == 0 && i < n; i++) {
		if (w && !strcmp(v[w - 1].p.name, v[i].p.name) &&
		    (!strcmp(v[w - 1].arch, v[i].arch) || !*v[i].arch)) {
			free(v[i].p.name);
			free(v[i].p.version);
			free(v[i].arch);
			continue;
		}
		if (w && !strcmp(v[w - 1].p.name, v[i].p.name)) {
			size_t nl = strlen(v[i].p.name) + 1 + strlen(v[i].arch) + 1;
			char *nn = malloc(nl);
			if (!nn) {
				r = -ENOMEM;
				break;
			}
			snprintf(nn, nl, "%s:%s", v[i].p.name, v[i].arch);
			free(v[i].p.name);
			v[i].p.name = nn;
		}
		v[w++] = v[i];
	}
	if (r < 0) {
		for (size_t i = 0; i < n; i++) {
			free(v[i].p.name);
			free(v[i].p.version);
			free(v[i].arch);
		}
		free(v);
		return r;
	}
	InsPkg *out = calloc(w ? w : 1, sizeof(*out));
	if (!out) {
		for (size_t i = 0; i < w; i++) {
			free(v[i].p.name);
			free(v[i].p.version);
			free(v[i].arch);
		}
		free(v);
		return -ENOMEM;
	}
	for (size_t i = 0; i < w; i++) {
		out[i] = v[i].p;
		free(v[i].arch);
	}
	free(v);
	/* name:arch entries may sort differently from their base names */
	if (w)
		qsort(out, w, sizeof(*out), cmp_pkg);
	size_t u = 0;
	for (size_t i = 0; i < w; i++) {
		if (u && !strcmp(out[u - 1].name, out[i].name)) {
			free(out[i].name);
			free(out[i].version);
			continue;
		}
		out[u++] = out[i];
	}
	w = u;
	*ret = out;
	*ret_n = w;
	return 0;
}

void ins_pkgs_free(InsPkg *p, size_t n)
{
	for (size_t i = 0; p && i < n; i++) {
		free(p[i].name);
		free(p[i].version);
	}
	free(p);
}

/*
 * Next non-empty, non-comment line of buf from *pos (CR stripped); false at
 * the end. Counts records against INS_MAX_RECORDS through *count.
 */
static bool next_line(const char *buf, size_t len, size_t *pos, const char **l, size_t *ll,
		      size_t count, bool *trunc)
{
	while (*pos < len) {
		size_t i = *pos, e = i;
		while (e < len && buf[e] != '\n')
			e++;
		*pos = e + 1;
		size_t n = e - i;
		if (n && buf[e - 1] == '\r')
			n--;
		if (!n || buf[i] == '#')
			continue;
		if (count >= INS_MAX_RECORDS) {
			*trunc = true;
			return false;
		}
		*l = buf + i;
		*ll = n;
		return true;
	}
	return false;
}

static bool name_ok(const char *s, size_t n)
{
	return n && printable(s, n, 256, false) && s[0] != '+' && s[0] != '-';
}

static int cmp_user(const void *x, const void *y)
{
	return strcmp(((const InsUser *)x)->name, ((const InsUser *)y)->name);
}

/* Sorts by name keeping the first of duplicates: entries carry their line order. */
#define DEDUP_SORTED(arr, n, freefn)                                                         \
	do {                                                                                 \
		size_t _w = 0;                                                               \
		for (size_t _k = 0; _k < (n); _k++) {                                        \
			if (_w && !strcmp((arr)[_w - 1].name, (arr)[_k].name)) {             \
				freefn(&(arr)[_k]);                                          \
				continue;                                                    \
			}                                                                    \
			(arr)[_w++] = (arr)[_k];                                             \
		}                                                                            \
		(n) = _w;                                                                    \
	} while (0)

static void user_clear(InsUser *u)
{
	free(u->name);
	free(u->gecos);
	free(u->home);
	free(u->shell);
}

static void group_clear(InsGroup *g)
{
	free(g->name);
	for (size_t i = 0; i < g->n_members; i++)
		free(g->members[i]);
	free(g->members);
}

static void shadow_clear(InsShadow *s) { free(s->name); }

/* Merge sort keeps equal names in input order, so the first line wins. */
static void msort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *),
		  void *tmp)
{
	if (n < 2)
		return;
	size_t h = n / 2;
	char *b = base, *t = tmp;
	msort(b, h, size, cmp, tmp);
	msort(b + h * size, n - h, size, cmp, tmp);
	size_t i = 0, j = h, k = 0;
	while (i < h && j < n) {
		if (cmp(b + j * size, b + i * size) < 0)
			memcpy(t + k++ * size, b + j++ * size, size);
		else
			memcpy(t + k++ * size, b + i++ * size, size);
	}
	while (i < h)
		memcpy(t + k++ * size, b + i++ * size, size);
	while (j < n)
		memcpy(t + k++ * size, b + j++ * size, size);
	memcpy(b, t, n * size);
}

static int stable_sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	if (n < 2)
		return 0;
	void *tmp = malloc(n * size);
	if (!tmp)
		return -ENOMEM;
	msort(base, n, size, cmp, tmp);
	free(tmp);
	return 0;
}

static int grow(void **v, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : 64;
	void *nv = realloc(*v, nc * size);
	if (!nv)
		return -ENOMEM;
	*v = nv;
	*cap = nc;
	return 0;
}

int ins_passwd_parse(const char *buf, size_t len, InsUser **ret, size_t *ret_n,
		     bool *ret_truncated)
{
	InsUser *v = NULL;
	size_t n = 0, cap = 0;
	const char *l;
	size_t ll;
	int r = 0;
	*ret_truncated = false;
	size_t pos = 0;
	while (next_line(buf, len, &pos, &l, &ll, n, ret_truncated)) {
		const char *f[7];
		size_t fl[7];
		uint32_t uid, gid;
		if (split(l, ll, ':', f, fl, 7) != 7 || !name_ok(f[0], fl[0]) ||
		    !parse_u32(f[2], fl[2], &uid) || !parse_u32(f[3], fl[3], &gid) ||
		    !printable(f[4], fl[4], 1024, true) || !printable(f[5], fl[5], 1024, true) ||
		    !printable(f[6], fl[6], 1024, true))
			continue;
		if ((r = grow((void **)&v, &cap, n, sizeof(*v))) < 0)
			break;
		v[n] = (InsUser){dup_n(f[0], fl[0]), dup_n(f[4], fl[4]), dup_n(f[5], fl[5]),
				 dup_n(f[6], fl[6]), uid, gid};
		n++;
		if (!v[n - 1].name || !v[n - 1].gecos || !v[n - 1].home || !v[n - 1].shell) {
			r = -ENOMEM;
			break;
		}
	}
	if (r == 0)
		r = stable_sort(v, n, sizeof(*v), cmp_user);
	if (r < 0) {
		ins_users_free(v, n);
		return r;
	}
	DEDUP_SORTED(v, n, user_clear);
	*ret = v;
	*ret_n = n;
	return 0;
}

static int cmp_group(const void *x, const void *y)
{
	return strcmp(((const InsGroup *)x)->name, ((const InsGroup *)y)->name);
}

static int cmp_str(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

int ins_group_parse(const char *buf, size_t len, InsGroup **ret, size_t *ret_n,
		    bool *ret_truncated)
{
	InsGroup *v = NULL;
	size_t n = 0, cap = 0;
	const char *l;
	size_t ll;
	int r = 0;
	*ret_truncated = false;
	size_t pos = 0;
	while (next_line(buf, len, &pos, &l, &ll, n, ret_truncated)) {
		const char *f[4];
		size_t fl[4];
		uint32_t gid;
		if (split(l, ll, ':', f, fl, 4) != 4 || !name_ok(f[0], fl[0]) ||
		    !parse_u32(f[2], fl[2], &gid))
			continue;
		if ((r = grow((void **)&v, &cap, n, sizeof(*v))) < 0)
			break;
		InsGroup *g = &v[n++];
		*g = (InsGroup){dup_n(f[0], fl[0]), gid, NULL, 0};
		if (!g->name) {
			r = -ENOMEM;
			break;
		}
		size_t mcap = 0;
		for (size_t i = 0; i < fl[3];) {
			const char *m = f[3] + i;
			const char *c = memchr(m, ',', fl[3] - i);
			size_t ml = c ? (size_t)(c - m) : fl[3] - i;
			i += ml + 1;
			if (!name_ok(m, ml))
				continue;
			if (g->n_members >= INS_MAX_MEMBERS) {
				*ret_truncated = true;
				break;
			}
			if ((r = grow((void **)&g->members, &mcap, g->n_members, sizeof(char *))) < 0 ||
			    !(g->members[g->n_members] = dup_n(m, ml))) {
				r = -ENOMEM;
				break;
			}
			g->n_members++;
		}
		if (r < 0)
			break;
		if (g->n_members)
			qsort(g->members, g->n_members, sizeof(char *), cmp_str);
		/* duplicate members collapse */
		size_t w = 0;
		for (size_t i = 0; i < g->n_members; i++) {
			if (w && !strcmp(g->members[w - 1], g->members[i])) {
				free(g->members[i]);
				continue;
			}
			g->members[w++] = g->members[i];
		}
		g->n_members = w;
	}
	if (r == 0)
		r = stable_sort(v, n, sizeof(*v), cmp_group);
	if (r < 0) {
		ins_groups_free(v, n);
		return r;
	}
	DEDUP_SORTED(v, n, group_clear);
	*ret = v;
	*ret_n = n;
	return 0;
}

static int cmp_shadow(const void *x, const void *y)
{
	return strcmp(((const InsShadow *)x)->name, ((const InsShadow *)y)->name);
}

int ins_shadow_parse(const char *buf, size_t len, InsShadow **ret, size_t *ret_n,
		     bool *ret_truncated)
{
	InsShadow *v = NULL;
	size_t n = 0, cap = 0;
	const char *l;
	size_t ll;
	int r = 0;
	*ret_truncated = false;
	size_t pos = 0;
	while (next_line(buf, len, &pos, &l, &ll, n, ret_truncated)) {
		const char *c1 = memchr(l, ':', ll);
		if (!c1 || !name_ok(l, (size_t)(c1 - l)))
			continue;
		const char *pw = c1 + 1;
		const char *c2 = memchr(pw, ':', ll - (size_t)(pw - l));
		size_t pwl = c2 ? (size_t)(c2 - pw) : ll - (size_t)(pw - l);
		if ((r = grow((void **)&v, &cap, n, sizeof(*v))) < 0)
			break;
		InsPw p = !pwl ? INS_PW_NONE : (pw[0] == '!' || pw[0] == '*') ? INS_PW_LOCKED : INS_PW_SET;
		v[n] = (InsShadow){dup_n(l, (size_t)(c1 - l)), p};
		if (!v[n++].name) {
			r = -ENOMEM;
			break;
		}
	}
	if (r == 0)
		r = stable_sort(v, n, sizeof(*v), cmp_shadow);
	if (r < 0) {
		ins_shadows_free(v, n);
		return r;
	}
	DEDUP_SORTED(v, n, shadow_clear);
	*ret = v;
	*ret_n = n;
	return 0;
}

void ins_users_free(InsUser *u, size_t n)
{
	for (size_t i = 0; u && i < n; i++)
		user_clear(&u[i]);
	free(u);
}

void ins_groups_free(InsGroup *g, size_t n)
{
	for (size_t i = 0; g && i < n; i++)
		group_clear(&g[i]);
	free(g);
}

void ins_shadows_free(InsShadow *s, size_t n)
{
	for (size_t i = 0; s && i < n; i++)
		shadow_clear(&s[i]);
	free(s);
}

const char *ins_pw_name(InsPw pw)
{
	return pw == INS_PW_SET ? "set" : pw == INS_PW_LOCKED ? "locked" : "none";
}
