// SPDX-License-Identifier: MIT
/*
 * The registry of base images and layers: a directory tree whose state is
 * nothing but files, so a restart (or a crash at any instant) sees exactly
 * what was last made durable.
 *
 *   DIR/layers/<id>/{disk,meta}     one directory per layer
 *   DIR/layers/.staging-<random>/   being built (flocked "lock" file inside)
 *   DIR/layers/.dead-<id>/          being deleted by gc
 *   DIR/refs/<id>/<holder>          one empty file per reference
 *   DIR/.lock                       flock serialising mutations
 *
 * DESIGN: every state change is a single rename, create or unlink followed
 * by an fsync of the directory, in an order that never lets gc see a layer
 * without the reference that justified creating it: a new layer's first
 * reference is recorded before the layer's directory is renamed into place,
 * and a layer is renamed out of sight (.dead-) before its files are removed.
 * Staging happens inside layers/ so relative backing names ("../<parent>/disk")
 * resolve the same before and after publication. Long work (copying and
 * hashing an import) runs outside the registry lock in a staging directory
 * protected by its own flock, so gc in another process can tell a live
 * staging directory from a crashed one. Reads of meta files are bounded and
 * strict. One ImgRegistry belongs to one thread at a time.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "cleanup.h"
#include "internal.h"

#define META_MAX 4096

struct ImgRegistry {
	char *dir;
	int dirfd;    /* DIR */
	int layersfd; /* DIR/layers */
	int refsfd;   /* DIR/refs */
	int lockfd;   /* DIR/.lock */
};

static void closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}
#define _cleanup_dir_ _cleanup_(closedirp)

/* Holds the registry flock for a scope. */
static void unlockp(int *fd)
{
	if (*fd >= 0)
		flock(*fd, LOCK_UN);
}
#define _cleanup_unlock_ _cleanup_(unlockp)

static int reg_lock(ImgRegistry *r, FlError *err)
{
	while (flock(r->lockfd, LOCK_EX) < 0)
		if (errno != EINTR)
			return fl_error_set(err, -errno, "cannot lock registry %s: %s", r->dir,
					    strerror(errno));
	return r->lockfd;
}

static bool valid_id(const char *id)
{
	if (!id || strlen(id) != IMG_ID_LEN)
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static bool valid_holder(const char *h)
{
	size_t n = h ? strlen(h) : 0;
	if (n == 0 || n > IMG_HOLDER_MAX || h[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = h[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == ':' || c == '-'))
			return false;
	}
	return true;
}

static int mkdirat_p(int dfd, const char *name)
{
	if (mkdirat(dfd, name, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Removes a directory that holds only files. */
static int rm_flat_dir(int parent, const char *name)
{
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	_cleanup_dir_ DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			unlinkat(dirfd(d), de->d_name, 0);
	if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* ---- meta files -------------------------------------------------------- */

static const char *kind_name(ImgLayerKind k) { return k == IMG_LAYER_BASE ? "base" : "overlay"; }
static const char *state_name(ImgLayerState s) { return s == IMG_LAYER_FROZEN ? "frozen" : "active"; }

static int write_meta(int dfd, const ImgLayer *l, bool sync)
{
	char buf[META_MAX];
	int n = snprintf(buf, sizeof(buf),
			 "id=%s\nparent=%s\nkind=%s\nstate=%s\nformat=%s\nvirtual_size=%" PRIu64
			 "\nsize=%" PRIu64 "\nsha256=%s\ncreated=%" PRId64 "\nname=%s\n",
			 l->id, l->parent, kind_name(l->kind), state_name(l->state),
			 img_format_name(l->format), l->virtual_size, l->size, l->sha256, l->created,
			 l->name);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -ENAMETOOLONG;
	int fd = openat(dfd, "meta.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int r = img_write_full(fd, buf, (size_t)n);
	if (r >= 0 && sync && fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (r >= 0 && renameat(dfd, "meta.tmp", dfd, "meta") < 0)
		r = -errno;
	if (r >= 0 && sync && fsync(dfd) < 0)
		r = -errno;
	return r;
}

static int parse_u64(const char *s, uint64_t *ret)
{
	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*ret = v;
	return 0;
}

/* Strict parser: known keys only, every required key present, bounded values. */
static int parse_meta(char *buf, const char *want_id, ImgLayer *ret)
{
	ImgLayer l = { 0 };
	unsigned seen = 0;
	char *save = NULL;
	for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		if (!eq)
			return -EBADMSG;
		*eq = '\0';
		const char *k = line, *v = eq + 1;
		uint64_t u;
		if (!strcmp(k, "id")) {
			if (!valid_id(v))
				return -EBADMSG;
			memcpy(l.id, v, IMG_ID_SIZE);
			seen |= 1;
		} else if (!strcmp(k, "parent")) {
			if (*v && !valid_id(v))
				return -EBADMSG;
			snprintf(l.parent, sizeof(l.parent), "%s", v);
		} else if (!strcmp(k, "kind")) {
			l.kind = !strcmp(v, "base") ? IMG_LAYER_BASE : !strcmp(v, "overlay") ? IMG_LAYER_OVERLAY : 0;
			if (!l.kind)
				return -EBADMSG;
			seen |= 2;
		} else if (!strcmp(k, "state")) {
			l.state = !strcmp(v, "frozen") ? IMG_LAYER_FROZEN : !strcmp(v, "active") ? IMG_LAYER_ACTIVE : 0;
			if (!l.state)
				return -EBADMSG;
			seen |= 4;
		} else if (!strcmp(k, "format")) {
			l.format = img_format_from_name(v);
			if (l.format == IMG_FMT_UNKNOWN)
				return -EBADMSG;
			seen |= 8;
		} else if (!strcmp(k, "virtual_size")) {
			if (parse_u64(v, &l.virtual_size) < 0)
				return -EBADMSG;
		} else if (!strcmp(k, "size")) {
			if (parse_u64(v, &l.size) < 0)
				return -EBADMSG;
		} else if (!strcmp(k, "sha256")) {
			if (*v && !valid_id(v))
				return -EBADMSG;
			snprintf(l.sha256, sizeof(l.sha256), "%s", v);
		} else if (!strcmp(k, "created")) {
			if (parse_u64(v, &u) < 0 || u > INT64_MAX)
				return -EBADMSG;
			l.created = (int64_t)u;
		} else if (!strcmp(k, "name")) {
			if (*v && !valid_holder(v))
				return -EBADMSG;
			snprintf(l.name, sizeof(l.name), "%s", v);
		} else {
			return -EBADMSG;
		}
	}
	if (seen != 15 || (want_id && strcmp(l.id, want_id)))
		return -EBADMSG;
	if ((l.kind == IMG_LAYER_OVERLAY) != (l.parent[0] != '\0'))
		return -EBADMSG;
	*ret = l;
	return 0;
}

static int read_meta(ImgRegistry *r, const char *id, ImgLayer *ret, FlError *err)
{
	char path[IMG_ID_SIZE + 8];
	snprintf(path, sizeof(path), "%s/meta", id);
	_cleanup_close_ int fd = openat(r->layersfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return fl_error_set(err, -ENOENT, "no layer %s in %s", id, r->dir);
		return fl_error_set(err, -errno, "layer %s: %s", id, strerror(errno));
	}
	char buf[META_MAX + 1];
	ssize_t n = read(fd, buf, META_MAX + 1);
	if (n < 0)
		return fl_error_set(err, -errno, "layer %s: %s", id, strerror(errno));
	if (n > META_MAX)
		return fl_error_set(err, -EBADMSG, "layer %s: metadata too large", id);
	buf[n] = '\0';
	if (parse_meta(buf, id, ret) < 0)
		return fl_error_set(err, -EBADMSG, "layer %s: malformed metadata", id);
	return 0;
}

/* ---- open / free --------------------------------------------------- */

void img_registry_free(ImgRegistry *r)
{
	if (!r)
		return;
	if (r->dirfd >= 0)
		close(r->dirfd);
	if (r->layersfd >= 0)
		close(r->layersfd);
	if (r->refsfd >= 0)
		close(r->refsfd);
	if (r->lockfd >= 0)
		close(r->lockfd);
	free(r->dir);
	free(r);
}

static int clean_staging(ImgRegistry *r);

int img_registry_open(const char *dir, ImgRegistry **ret, FlError *err)
{
	if (!dir || !*dir)
		return fl_error_set(err, -EINVAL, "no registry directory given");
	_cleanup_(img_registry_freep) ImgRegistry *r = calloc(1, sizeof(*r));
	if (!r)
		return fl_error_set(err, -ENOMEM, "out of memory");
	r->dirfd = r->layersfd = r->refsfd = r->lockfd = -1;
	r->dir = strdup(dir);
	if (!r->dir)
		return fl_error_set(err, -ENOMEM, "out of memory");
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return fl_error_set(err, -errno, "cannot create %s: %s", dir, strerror(errno));
	r->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r->dirfd < 0)
		return fl_error_set(err, -errno, "cannot open %s: %s", dir, strerror(errno));
	int q;
	if ((q = mkdirat_p(r->dirfd, "layers")) < 0 || (q = mkdirat_p(r->dirfd, "refs")) < 0)
		return fl_error_set(err, q, "cannot create the registry in %s: %s", dir, strerror(-q));
	r->layersfd = openat(r->dirfd, "layers", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	r->refsfd = openat(r->dirfd, "refs", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	r->lockfd = openat(r->dirfd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (r->layersfd < 0 || r->refsfd < 0 || r->lockfd < 0)
		return fl_error_set(err, -errno, "cannot open the registry in %s: %s", dir,
				    strerror(errno));
	_cleanup_unlock_ int lk = reg_lock(r, err);
	if (lk < 0)
		return lk;
	clean_staging(r);
	*ret = TAKE_PTR(r);
	return 0;
}

/* ---- staging --------------------------------------------------------- */

typedef struct Staging {
	char name[48];
	int fd;     /* the staging directory */
	int lockfd; /* flocked while in use */
} Staging;

static void staging_drop(ImgRegistry *r, Staging *s)
{
	if (s->fd >= 0)
		close(s->fd);
	if (s->name[0])
		rm_flat_dir(r->layersfd, s->name);
	if (s->lockfd >= 0)
		close(s->lockfd);
	s->fd = s->lockfd = -1;
	s->name[0] = '\0';
}

static int random_hex(char *out, size_t nbytes)
{
	uint8_t b[32];
	if (nbytes > sizeof(b))
		return -EINVAL;
	size_t got = 0;
	while (got < nbytes) {
		ssize_t n = getrandom(b + got, nbytes - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	img_hex(b, nbytes, out);
	return 0;
}

/* Call with the registry lock held. */
static int staging_new(ImgRegistry *r, Staging *s, FlError *err)
{
	char rnd[33];
	s->fd = s->lockfd = -1;
	s->name[0] = '\0';
	int q = random_hex(rnd, 16);
	if (q < 0)
		return fl_error_set(err, q, "getrandom: %s", strerror(-q));
	snprintf(s->name, sizeof(s->name), ".staging-%s", rnd);
	if (mkdirat(r->layersfd, s->name, 0755) < 0) {
		q = -errno;
		s->name[0] = '\0';
		return fl_error_set(err, q, "cannot create a staging directory in %s: %s", r->dir,
				    strerror(-q));
	}
	s->fd = openat(r->layersfd, s->name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (s->fd >= 0)
		s->lockfd = openat(s->fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->fd < 0 || s->lockfd < 0 || flock(s->lockfd, LOCK_EX | LOCK_NB) < 0) {
		q = -errno;
		staging_drop(r, s);
		return fl_error_set(err, q, "cannot prepare staging in %s: %s", r->dir, strerror(-q));
	}
	return 0;
}

/* Moves a finished staging directory to layers/<id> (lock held). */
static int staging_publish(ImgRegistry *r, Staging *s, const char *id, bool sync, FlError *err)
{
	unlinkat(s->fd, "lock", 0);
	if ((sync && fsync(s->fd) < 0) || renameat(r->layersfd, s->name, r->layersfd, id) < 0 ||
	    (sync && fsync(r->layersfd) < 0)) {
		int q = -errno;
		return fl_error_set(err, q, "cannot publish layer %s: %s", id, strerror(-q));
	}
	s->name[0] = '\0';
	close(s->fd);
	close(s->lockfd);
	s->fd = s->lockfd = -1;
	return 0;
}

/* Removes crashed staging and half-deleted layers (lock held). */
static int clean_staging(ImgRegistry *r)
{
	int fd = dup(r->layersfd);
	if (fd < 0)
		return -errno;
	_cleanup_dir_ DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	rewinddir(d);
	struct dirent *de;
	char names[64][48];
	unsigned n = 0;
	while ((de = readdir(d)) && n < FL_ARRAY_SIZE(names)) {
		if (!strncmp(de->d_name, ".dead-", 6)) {
			snprintf(names[n++], sizeof(names[0]), "%s", de->d_name);
		} else if (!strncmp(de->d_name, ".staging-", 9) && strlen(de->d_name) < 48) {
			char lp[64];
			snprintf(lp, sizeof(lp), "%s/lock", de->d_name);
			_cleanup_close_ int lfd = openat(r->layersfd, lp, O_RDWR | O_CLOEXEC);
			if (lfd >= 0 && flock(lfd, LOCK_EX | LOCK_NB) < 0)
				continue; /* in use by a live process */
			snprintf(names[n++], sizeof(names[0]), "%s", de->d_name);
		}
	}
	for (unsigned i = 0; i < n; i++)
		rm_flat_dir(r->layersfd, names[i]);
	return 0;
}

/* ---- references -------------------------------------------------------- */

static int add_ref_locked(ImgRegistry *r, const char *id, const char *holder, bool sync,
			  FlError *err)
{
	int q = mkdirat_p(r->refsfd, id);
	if (q < 0)
		return fl_error_set(err, q, "cannot record a reference to %s: %s", id, strerror(-q));
	_cleanup_close_ int dfd = openat(r->refsfd, id, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dfd < 0)
		return fl_error_set(err, -errno, "cannot record a reference to %s: %s", id,
				    strerror(errno));
	/* An empty file's existence is the whole record: creating it is atomic. */
	int fd = openat(dfd, holder, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return fl_error_set(err, -errno, "cannot record reference %s -> %s: %s", holder, id,
				    strerror(errno));
	close(fd);
	if (sync && (fsync(dfd) < 0 || fsync(r->refsfd) < 0))
		return fl_error_set(err, -errno, "cannot sync references of %s: %s", id,
				    strerror(errno));
	return 0;
}

static bool layer_exists(ImgRegistry *r, const char *id)
{
	struct stat st;
	return fstatat(r->layersfd, id, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

int img_registry_ref(ImgRegistry *r, const char *id, const char *holder, FlError *err)
{
	if (!valid_id(id))
		return fl_error_set(err, -EINVAL, "invalid layer id");
	if (!valid_holder(holder))
		return fl_error_set(err, -EINVAL, "invalid holder name");
	_cleanup_unlock_ int lk = reg_lock(r, err);
	if (lk < 0)
		return lk;
	if (!layer_exists(r, id))
		return fl_error_set(err, -ENOENT, "no layer %s in %s", id, r->dir);
	return add_ref_locked(r, id, holder, true, err);
}

int img_registry_unref(ImgRegistry *r, const char *id, const char *holder, FlError *err)
{
	if (!valid_id(id))
		return fl_error_set(err, -EINVAL, "invalid layer id");
	if (!valid_holder(holder))
		return fl_error_set(err, -EINVAL, "invalid holder name");
	_cleanup_unlock_ int lk = reg_lock(r, err);
	if (lk < 0)
		return lk;
	_cleanup_close_ int dfd = openat(r->refsfd, id, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dfd < 0)
		return errno == ENOENT ? 0 : fl_error_set(err, -errno, "refs of %s: %s", id, strerror(errno));
	if (unlinkat(dfd, holder, 0) < 0)
		return errno == ENOENT ? 0 : fl_error_set(err, -errno, "cannot drop reference %s -> %s: %s",
							  holder, id, strerror(errno));
	if (fsync(dfd) < 0)
		return fl_error_set(err, -errno, "cannot sync references of %s: %s", id, strerror(errno));
	return 0;
}

static int count_refs(ImgRegistry *r, const char *id)
{
	int fd = openat(r->refsfd, id, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	_cleanup_dir_ DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	return n;
}

int img_registry_refcount(ImgRegistry *r, const char *id, FlError *err)
{
	if (!valid_id(id))
		return fl_error_set(err, -EINVAL, "invalid layer id");
	int n = count_refs(r, id);
	if (n < 0)
		return fl_error_set(err, n, "refs of %s: %s", id, strerror(-n));
	return n;
}

/* ---- listing ----------------------------------------------------------- */

/* Loads every layer's metadata. Malformed ones are skipped (never deleted);
 * the first one's id goes to bad (if non-NULL, "" when none). */
static int load_all_bad(ImgRegistry *r, ImgLayer **ret, size_t *ret_n, char *bad)
{
	int fd = dup(r->layersfd);
	if (fd < 0)
		return -errno;
	_cleanup_dir_ DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	rewinddir(d);
	_cleanup_free_ ImgLayer *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!valid_id(de->d_name))
			continue;
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 16;
			ImgLayer *nv = realloc(v, nc * sizeof(*nv));
			if (!nv)
				return -ENOMEM;
			v = nv;
			cap = nc;
		}
		if (read_meta(r, de->d_name, &v[n], NULL) == 0)
			n++;
		else if (bad && !bad[0])
			memcpy(bad, de->d_name, IMG_ID_SIZE);
	}
	*ret = TAKE_PTR(v);
	*ret_n = n;
	return 0;
}

static int load_all(ImgRegistry *r, ImgLayer **ret, size_t *ret_n)
{
	return load_all_bad(r, ret, ret_n, NULL);
}

int img_registry_list(ImgRegistry *r, img_layer_fn fn, void *userdata, FlError *err)
{
	_cleanup_free_ ImgLayer *v = NULL;
	size_t n = 0;
	int q = load_all(r, &v, &n);
	if (q < 0)
		return fl_error_set(err, q, "cannot list %s: %s", r->dir, strerror(-q));
	for (size_t i = 0; i < n; i++) {
		q = fn(&v[i], userdata);
		if (q)
			return q;
	}
	return 0;
}

int img_registry_children(ImgRegistry *r, const char *id, FlError *err)
{
	_cleanup_free_ ImgLayer *v = NULL;
	size_t n = 0;
	int q = load_all(r, &v, &n);
	if (q < 0)
		return fl_error_set(err, q, "cannot list %s: %s", r->dir, strerror(-q));
	int c = 0;
	for (size_t i = 0; i < n; i++)
		c += !strcmp(v[i].parent, id);
	return c;
}

int img_registry_layer_info(ImgRegistry *r, const char *id, ImgLayer *ret, FlError *err)
{
	if (!valid_id(id))
		return fl_error_set(err, -EINVAL, "invalid layer id");
	return read_meta(r, id, ret, err);
}

int img_registry_layer_path(ImgRegistry *r, const char *id, char *buf, size_t len, FlError *err)
{
	if (!valid_id(id))
		return fl_error_set(err, -EINVAL, "invalid layer id");
	if (!layer_exists(r, id))
		return fl_error_set(err, -ENOENT, "no layer %s in %s", id, r->dir);
	int n = snprintf(buf, len, "%s/layers/%s/disk", r->dir, id);
	if (n < 0 || (size_t)n >= len)
		return fl_error_set(err, -ENAMETOOLONG, "path too long");
	return 0;
}

/* ---- import, overlays, freeze --------------------------------------- */

int img_registry_import(ImgRegistry *r, const char *src, const char *name, const char *holder,
			char ret_id[IMG_ID_SIZE], FlError *err)
{
	if (holder && !valid_holder(holder))
		return fl_error_set(err, -EINVAL, "invalid holder name");
	if (name && *name && !valid_holder(name))
		return fl_error_set(err, -EINVAL, "invalid image name");
	ImgInfo info;
	int q = img_probe(src, &info, err);
	if (q < 0)
		return q;
	if (info.format == IMG_FMT_QCOW2 && info.has_backing)
		return fl_error_set(err, -EINVAL, "%s has a backing file: flatten it before importing", src);
	if (info.format == IMG_FMT_QCOW2 && (info.corrupt || info.nb_snapshots))
		return fl_error_set(err, -EINVAL, "%s is marked corrupt or has internal snapshots", src);

	Staging s;
	{
		_cleanup_unlock_ int lk = reg_lock(r, err);
		if (lk < 0)
			return lk;
		q = staging_new(r, &s, err);
		if (q < 0)
			return q;
	}
	/* The long part runs without the registry lock. */
	char disk[IMG_PATH_MAX];
	snprintf(disk, sizeof(disk), "%s/layers/%s/disk", r->dir, s.name);
	char id[IMG_ID_SIZE];
	q = img_copy_file(src, disk, NULL, NULL, err);
	if (q >= 0)
		q = img_sha256_file(disk, id, err);
	if (q >= 0 && fchmodat(s.fd, "disk", 0444, 0) < 0)
		q = fl_error_set(err, -errno, "chmod %s: %s", disk, strerror(errno));
	if (q < 0) {
		staging_drop(r, &s);
		return q;
	}
	_cleanup_unlock_ int lk = reg_lock(r, err);
	if (lk < 0) {
		staging_drop(r, &s);
		return lk;
	}
	if (layer_exists(r, id)) {
		staging_drop(r, &s);
		if (holder && (q = add_ref_locked(r, id, holder, true, err)) < 0)
			return q;
		memcpy(ret_id, id, IMG_ID_SIZE);
		return 0;
	}
	struct stat st;
	ImgLayer l = { .kind = IMG_LAYER_BASE, .state = IMG_LAYER_FROZEN, .format = info.format,
		       .virtual_size = info.virtual_size, .created = time(NULL) };
	memcpy(l.id, id, IMG_ID_SIZE);
	memcpy(l.sha256, id, IMG_ID_SIZE);
	if (fstatat(s.fd, "disk", &st, 0) == 0)
		l.size = (uint64_t)st.st_size;
	if (name)
		snprintf(l.name, sizeof(l.name), "%s", name);
	q = write_meta(s.fd, &l, true);
	if (q < 0) {
		staging_drop(r, &s);
		return fl_error_set(err, q, "cannot write metadata for %s: %s", id, strerror(-q));
	}
	if (holder && (q = add_ref_locked(r, id, holder, true, err)) < 0) {
		staging_drop(r, &s);
		return q;
	}
	q = staging_publish(r, &s, id, true, err);
	if (q < 0) {
		staging_drop(r, &s);
		return q;
	}
	memcpy(ret_id, id, IMG_ID_SIZE);
	return 0;
}

int img_registry_new_overlay(ImgRegistry *r, const char *parent_id, const char *holder,
			     unsigned cluster_bits, char ret_id[IMG_ID_SIZE], FlError *err)
{
	return img_registry_new_overlay_flags(r, parent_id, holder, cluster_bits, 0, ret_id, err);
}

int img_registry_new_overlay_flags(ImgRegistry *r, const char *parent_id, const char *holder,
				   unsigned cluster_bits, unsigned flags, char ret_id[IMG_ID_SIZE],
				   FlError *err)
{
	if (flags & ~IMG_CREATE_NO_SYNC)
		return fl_error_set(err, -EINVAL, "unknown flags 0x%x", flags);
	const bool sync = !(flags & IMG_CREATE_NO_SYNC);
	if (!valid_id(parent_id))
		return fl_error_set(err, -EINVAL, "invalid parent layer id");
	if (!valid_holder(holder))
		return fl_error_set(err, -EINVAL, "invalid holder name");
	_cleanup_unlock_ int lk = reg_lock(r, err);
	if (lk < 0)
		return lk;
	ImgLayer parent;
	int q = read_meta(r, parent_id, &parent, err);
	if (q < 0)
		return q;

	/* id = sha256("fluid-layer-v1\0" parent "\0" 16 random bytes) */
	uint8_t nonce[16], d[32];
	if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
		return fl_error_set(err, -EIO, "getrandom failed");
	FlSha256 h;
	fl_sha256_init(&h);
	fl_sha256_update(&h, "fluid-layer-v1", 15);
	fl_sha256_update(&h, parent_id, IMG_ID_SIZE);
	fl_sha256_update(&h, nonce, sizeof(nonce));
	fl_sha256_final(&h, d);
	ImgLayer l = { .kind = IMG_LAYER_OVERLAY, .state = IMG_LAYER_ACTIVE, .format = IMG_FMT_QCOW2,
		       .virtual_size = parent.virtual_size, .created = time(NULL) };
	img_hex(d, 32, l.id);
	memcpy(l.parent, parent_id, IMG_ID_SIZE);

	Staging s;
	q = staging_new(r, &s, err);
	if (q < 0)
		return q;
	char disk[IMG_PATH_MAX], backing[IMG_ID_SIZE + 16];
	snprintf(disk, sizeof(disk), "%s/layers/%s/disk", r->dir, s.name);
	snprintf(backing, sizeof(backing), "../%s/disk", parent_id);
	q = img_qcow2_create_overlay_flags(disk, backing, img_format_name(parent.format), 0,
					   cluster_bits, flags, err);
	if (q >= 0 && (q = write_meta(s.fd, &l, sync)) < 0)
		fl_error_set(err, q, "cannot write metadata: %s", strerror(-q));
	if (q >= 0)
		q = add_ref_locked(r, l.id, holder, sync, err);
	if (q >= 0)
		q = staging_publish(r, &s, l.id, sync, err);
	if (q < 0) {
		staging_drop(r, &s);
		return q;
	}
	memcpy(ret_id, l.id, IMG_ID_SIZE);
	return 0;
}

int img_registry_freeze(ImgRegistry *r, const char *id, unsigned flags, FlError *err)
{
	if (!valid_id(id))
		return fl_error_set(err, -EINVAL, "invalid layer id");
	ImgLayer l;
	int q = read_meta(r, id, &l, err);
	if (q < 0)
		return q;
	if (l.state == IMG_LAYER_FROZEN)
		return 0;
	char disk[IMG_PATH_MAX];
	snprintf(disk, sizeof(disk), "%s/layers/%s/disk", r->dir, id);
	char sha[IMG_ID_SIZE] = "";
	/* Hash outside the lock: the caller has stopped writing. */
	if ((flags & IMG_FREEZE_HASH) && (q = img_sha256_file(disk, sha, err)) < 0)
		return q;
	_cleanup_unlock_ int lk = reg_lock(r, err);
	if (lk < 0)
		return lk;
	if ((q = read_meta(r, id, &l, err)) < 0)
		return q;
	if (l.state == IMG_LAYER_FROZEN)
		return 0;
	_cleanup_close_ int fd = open(disk, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fsync(fd) < 0 || fstat(fd, &st) < 0 || fchmod(fd, 0444) < 0)
		return fl_error_set(err, -errno, "cannot freeze %s: %s", disk, strerror(errno));
	l.state = IMG_LAYER_FROZEN;
	l.size = (uint64_t)st.st_size;
	memcpy(l.sha256, sha, sizeof(sha));
	char rel[IMG_ID_SIZE];
	memcpy(rel, id, IMG_ID_SIZE);
	_cleanup_close_ int dfd = openat(r->layersfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dfd < 0)
		return fl_error_set(err, -errno, "layer %s: %s", id, strerror(errno));
	q = write_meta(dfd, &l, true);
	if (q < 0)
		return fl_error_set(err, q, "cannot write metadata of %s: %s", id, strerror(-q));
	/* The layer may have been created with IMG_CREATE_NO_SYNC: make its
	 * directory entry and its references durable now. */
	_cleanup_close_ int rfd = openat(r->refsfd, id, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fsync(r->layersfd) < 0 || (rfd >= 0 && fsync(rfd) < 0) || fsync(r->refsfd) < 0)
		return fl_error_set(err, -errno, "cannot sync layer %s: %s", id, strerror(errno));
	return 0;
}

int img_registry_verify(ImgRegistry *r, const char *id, FlError *err)
{
	ImgLayer l;
	int q = img_registry_layer_info(r, id, &l, err);
	if (q < 0)
		return q;
	if (l.state != IMG_LAYER_FROZEN || !l.sha256[0])
		return fl_error_set(err, -ENODATA, "layer %s has no recorded content hash", id);
	char disk[IMG_PATH_MAX], sha[IMG_ID_SIZE];
	snprintf(disk, sizeof(disk), "%s/layers/%s/disk", r->dir, id);
	if ((q = img_sha256_file(disk, sha, err)) < 0)
		return q;
	if (strcmp(sha, l.sha256))
		return fl_error_set(err, -EBADMSG, "layer %s: content hash mismatch (%s)", id, sha);
	return 0;
}

/* ---- garbage collection ---------------------------------------------- */

int img_registry_gc(ImgRegistry *r, unsigned *ret_removed, FlError *err)
{
	_cleanup_unlock_ int lk = reg_lock(r, err);
	if (lk < 0)
		return lk;
	unsigned removed = 0;
	for (;;) {
		_cleanup_free_ ImgLayer *v = NULL;
		size_t n = 0;
		char bad[IMG_ID_SIZE] = "";
		int q = load_all_bad(r, &v, &n, bad);
		if (q < 0)
			return fl_error_set(err, q, "cannot list %s: %s", r->dir, strerror(-q));
		if (bad[0]) {
			/* Its parent is unknown: deleting anything could break it. */
			clean_staging(r);
			return fl_error_set(err, -EBADMSG,
					    "layer %s has malformed metadata: not collecting garbage until it is repaired or removed",
					    bad);
		}
		unsigned round = 0;
		for (size_t i = 0; i < n; i++) {
			bool has_child = false;
			for (size_t j = 0; j < n && !has_child; j++)
				has_child = !strcmp(v[j].parent, v[i].id);
			if (has_child)
				continue;
			int refs = count_refs(r, v[i].id);
			if (refs != 0)
				continue; /* referenced, or unreadable: keep */
			char dead[IMG_ID_SIZE + 8];
			snprintf(dead, sizeof(dead), ".dead-%s", v[i].id);
			if (renameat(r->layersfd, v[i].id, r->layersfd, dead) < 0 || fsync(r->layersfd) < 0)
				return fl_error_set(err, -errno, "cannot remove layer %s: %s", v[i].id,
						    strerror(errno));
			rm_flat_dir(r->layersfd, dead);
			rm_flat_dir(r->refsfd, v[i].id);
			round++;
		}
		removed += round;
		if (!round)
			break;
	}
	/* Reference directories of layers that do not exist (crash during creation). */
	int fd = dup(r->refsfd);
	if (fd >= 0) {
		_cleanup_dir_ DIR *d = fdopendir(fd);
		if (!d) {
			close(fd);
		} else {
			rewinddir(d);
			struct dirent *de;
			char names[64][IMG_ID_SIZE];
			unsigned k = 0;
			while ((de = readdir(d)) && k < FL_ARRAY_SIZE(names))
				if (valid_id(de->d_name) && !layer_exists(r, de->d_name))
					memcpy(names[k++], de->d_name, IMG_ID_SIZE);
			for (unsigned i = 0; i < k; i++)
				rm_flat_dir(r->refsfd, names[i]);
		}
	}
	fsync(r->refsfd);
	clean_staging(r);
	if (ret_removed)
		*ret_removed = removed;
	return 0;
}
