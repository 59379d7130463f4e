// SPDX-License-Identifier: MIT
/*
 * qcow2 headers: strict parsing (every field read big-endian and checked
 * against the file size before use), native creation of overlays, and
 * backing-chain resolution.
 *
 * DESIGN: the parser is pure (buffer + file size in, ImgInfo out) so the
 * fuzzer can drive it without files. Everything it needs lies in the first
 * cluster, as QEMU requires, so readers fetch at most one cluster (<= 2 MiB)
 * per layer. Overlays are built in memory (header cluster, refcount table,
 * one refcount block; the L1 table is all zeros and comes from ftruncate)
 * and published with rename, so a crash never leaves a half-written image.
 * Backing names are refused when QEMU could read them as something other
 * than a plain file name ("json:{...}", "nbd:host:port", ...): a guest that
 * controls an image's bytes must not be able to point us elsewhere. Layers
 * are opened with O_NONBLOCK (a backing name naming a FIFO must not hang
 * us) and must be regular files or block devices.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "internal.h"

#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_SNAPSHOTS 65536u

const char *img_format_name(ImgFormat f)
{
	switch (f) {
	case IMG_FMT_RAW:
		return "raw";
	case IMG_FMT_QCOW2:
		return "qcow2";
	default:
		return "unknown";
	}
}

ImgFormat img_format_from_name(const char *name)
{
	if (!name)
		return IMG_FMT_UNKNOWN;
	if (strcmp(name, "raw") == 0)
		return IMG_FMT_RAW;
	if (strcmp(name, "qcow2") == 0)
		return IMG_FMT_QCOW2;
	return IMG_FMT_UNKNOWN;
}

/* A backing name QEMU will treat as a plain file name. */
static bool backing_name_ok(const char *s, size_t len)
{
	if (len == 0 || len > IMG_BACKING_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	/* "proto:..." with no '/' before the ':' is a protocol for QEMU. */
	const char *colon = memchr(s, ':', len);
	if (colon) {
		const char *slash = memchr(s, '/', (size_t)(colon - s));
		if (!slash)
			return false;
	}
	return true;
}

static bool format_name_ok(const uint8_t *p, size_t len)
{
	if (len == 0 || len >= IMG_FORMAT_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum(p[i]) && p[i] != '-' && p[i] != '_')
			return false;
	return true;
}

int img_qcow2_parse_header(const void *vbuf, size_t len, uint64_t file_size, ImgInfo *ret,
			   FlError *err)
{
	const uint8_t *b = vbuf;
	ImgInfo in = { 0 };

	if (len > file_size)
		len = (size_t)file_size;
	if (len < QCOW2_V2_HEADER_LEN)
		return fl_error_set(err, -EINVAL, "truncated qcow2 header (%zu bytes)", len);
	if (img_be32(b) != QCOW2_MAGIC)
		return fl_error_set(err, -EMEDIUMTYPE, "not a qcow2 image (bad magic)");
	in.format = IMG_FMT_QCOW2;
	in.file_size = file_size;
	in.version = img_be32(b + 4);
	if (in.version != 2 && in.version != 3)
		return fl_error_set(err, -ENOTSUP, "unsupported qcow2 version %u", in.version);
	uint64_t backing_off = img_be64(b + 8);
	uint32_t backing_len = img_be32(b + 16);
	in.cluster_bits = img_be32(b + 20);
	if (in.cluster_bits < IMG_CLUSTER_BITS_MIN || in.cluster_bits > IMG_CLUSTER_BITS_MAX)
		return fl_error_set(err, -EINVAL, "invalid cluster_bits %u (allowed %d..%d)",
				    in.cluster_bits, IMG_CLUSTER_BITS_MIN, IMG_CLUSTER_BITS_MAX);
	uint64_t cs = 1ull << in.cluster_bits;
	in.cluster_size = (uint32_t)cs;
	in.virtual_size = img_be64(b + 24);
	if (in.virtual_size > IMG_MAX_VIRTUAL_SIZE)
		return fl_error_set(err, -EINVAL, "virtual size %llu is too large",
				    (unsigned long long)in.virtual_size);
	uint32_t crypt = img_be32(b + 32);
	if (crypt != 0)
		return fl_error_set(err, -ENOTSUP, "encrypted qcow2 images are not supported");
	in.l1_size = img_be32(b + 36);
	in.l1_table_offset = img_be64(b + 40);
	in.refcount_table_offset = img_be64(b + 48);
	in.refcount_table_clusters = img_be32(b + 56);
	in.nb_snapshots = img_be32(b + 60);
	uint64_t snap_off = img_be64(b + 64);

	uint32_t header_len = QCOW2_V2_HEADER_LEN;
	in.refcount_order = 4;
	if (in.version == 3) {
		if (len < QCOW2_V3_HEADER_LEN)
			return fl_error_set(err, -EINVAL, "truncated qcow2 v3 header (%zu bytes)", len);
		in.incompatible_features = img_be64(b + 72);
		in.compatible_features = img_be64(b + 80);
		in.autoclear_features = img_be64(b + 88);
		in.refcount_order = img_be32(b + 96);
		header_len = img_be32(b + 100);
		if (header_len < QCOW2_V3_HEADER_LEN || header_len > cs)
			return fl_error_set(err, -EINVAL, "invalid header_length %u", header_len);
		if (header_len > len)
			return fl_error_set(err, -EINVAL, "truncated qcow2 header (length %u, have %zu)",
					    header_len, len);
		/* Byte 104 is the compression type, meaningful only with incompat bit 3. */
		if (header_len > QCOW2_V3_HEADER_LEN && b[104] != 0)
			return fl_error_set(err, -ENOTSUP, "unsupported compression type %u", b[104]);
		if (in.refcount_order > 6)
			return fl_error_set(err, -EINVAL, "invalid refcount_order %u", in.refcount_order);
	}
	in.dirty = in.incompatible_features & QCOW2_INCOMPAT_DIRTY;
	in.corrupt = in.incompatible_features & QCOW2_INCOMPAT_CORRUPT;
	uint64_t unknown = in.incompatible_features & ~(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT);
	if (unknown)
		return fl_error_set(err, -ENOTSUP,
				    "unsupported qcow2 incompatible features 0x%llx",
				    (unsigned long long)unknown);

	/* L1 table: aligned, inside the file, big enough for the virtual size. */
	uint64_t l2_bytes_covered = cs * (cs / 8); /* <= 2^39 */
	uint64_t l1_needed = (in.virtual_size + l2_bytes_covered - 1) / l2_bytes_covered;
	if ((uint64_t)in.l1_size * 8 > QCOW2_MAX_L1_BYTES)
		return fl_error_set(err, -EINVAL, "L1 table too large (%u entries)", in.l1_size);
	if (in.l1_size < l1_needed)
		return fl_error_set(err, -EINVAL, "L1 table too small for the virtual size");
	if (in.l1_size > 0) {
		if (in.l1_table_offset & (cs - 1) || in.l1_table_offset == 0)
			return fl_error_set(err, -EINVAL, "L1 table offset 0x%llx is not cluster-aligned",
					    (unsigned long long)in.l1_table_offset);
		if (in.l1_table_offset > file_size ||
		    (uint64_t)in.l1_size * 8 > file_size - in.l1_table_offset)
			return fl_error_set(err, -EINVAL, "L1 table lies outside the file");
	}
	/* Refcount table. */
	if (in.refcount_table_clusters == 0 ||
	    (uint64_t)in.refcount_table_clusters * cs > QCOW2_MAX_REFTABLE_BYTES)
		return fl_error_set(err, -EINVAL, "invalid refcount table size (%u clusters)",
				    in.refcount_table_clusters);
	if (in.refcount_table_offset == 0 || in.refcount_table_offset & (cs - 1))
		return fl_error_set(err, -EINVAL, "refcount table offset is not cluster-aligned");
	if (in.refcount_table_offset > file_size ||
	    (uint64_t)in.refcount_table_clusters * cs > file_size - in.refcount_table_offset)
		return fl_error_set(err, -EINVAL, "refcount table lies outside the file");
	/* Internal snapshots: we never create them, but tolerate sane ones. */
	if (in.nb_snapshots > QCOW2_MAX_SNAPSHOTS)
		return fl_error_set(err, -EINVAL, "too many internal snapshots (%u)", in.nb_snapshots);
	if (in.nb_snapshots && (snap_off & 7 || snap_off == 0 || snap_off >= file_size))
		return fl_error_set(err, -EINVAL, "snapshot table offset outside the file");

	/* Header extensions end where the backing name starts (or at the cluster end). */
	size_t limit = len < cs ? len : (size_t)cs;
	size_t ext_end = limit;
	if (backing_off) {
		if (backing_off < header_len)
			return fl_error_set(err, -EINVAL, "backing file name overlaps the header");
		if (backing_off < ext_end)
			ext_end = (size_t)backing_off;
	}
	size_t off = header_len;
	while (off + 8 <= ext_end) {
		uint32_t type = img_be32(b + off), elen = img_be32(b + off + 4);
		off += 8;
		if (type == QCOW2_EXT_END)
			break;
		if (elen > ext_end - off)
			return fl_error_set(err, -EINVAL, "header extension 0x%08x overflows (%u bytes)",
					    type, elen);
		if (type == QCOW2_EXT_BACKING_FORMAT) {
			if (!format_name_ok(b + off, elen))
				return fl_error_set(err, -EINVAL, "invalid backing format extension");
			memcpy(in.backing_format, b + off, elen);
			in.backing_format[elen] = '\0';
		}
		off += ((size_t)elen + 7) & ~(size_t)7;
	}

	if (backing_off && backing_len) {
		if (backing_len > IMG_BACKING_NAME_MAX)
			return fl_error_set(err, -EINVAL, "backing file name too long (%u bytes)",
					    backing_len);
		if (backing_off >= limit || backing_len > limit - backing_off)
			return fl_error_set(err, -EINVAL,
					    "backing file name lies outside the first cluster or the file");
		const char *name = (const char *)b + backing_off;
		if (!backing_name_ok(name, backing_len))
			return fl_error_set(err, -EINVAL,
					    "refusing backing file name (control characters or a protocol prefix)");
		memcpy(in.backing_file, name, backing_len);
		in.backing_file[backing_len] = '\0';
		in.has_backing = true;
	} else {
		in.backing_format[0] = '\0';
	}
	*ret = in;
	return 0;
}

/* Reads as much of the first cluster as parsing needs, then parses it. */
static int qcow2_info_fd(int fd, const char *path, ImgInfo *ret, FlError *err)
{
	uint64_t fsize;
	int r = img_fd_size(fd, &fsize);
	if (r == -EINVAL)
		return fl_error_set(err, r, "%s is not a regular file or block device", path);
	if (r < 0)
		return fl_error_set(err, r, "cannot stat %s: %s", path, strerror(-r));
	uint8_t small[4096];
	size_t n = fsize < sizeof(small) ? (size_t)fsize : sizeof(small);
	r = img_pread_full(fd, small, n, 0);
	if (r < 0)
		return fl_error_set(err, r, "cannot read %s: %s", path, strerror(-r));
	if (n >= 24 && img_be32(small) == QCOW2_MAGIC) {
		uint32_t cb = img_be32(small + 20);
		if (cb >= IMG_CLUSTER_BITS_MIN && cb <= IMG_CLUSTER_BITS_MAX && (1ull << cb) > n &&
		    fsize > n) {
			size_t want = (size_t)((1ull << cb) < fsize ? (1ull << cb) : fsize);
			_cleanup_free_ uint8_t *big = malloc(want);
			if (!big)
				return fl_error_set(err, -ENOMEM, "out of memory");
			r = img_pread_full(fd, big, want, 0);
			if (r < 0)
				return fl_error_set(err, r, "cannot read %s: %s", path, strerror(-r));
			r = img_qcow2_parse_header(big, want, fsize, ret, err);
			goto out;
		}
	}
	r = img_qcow2_parse_header(small, n, fsize, ret, err);
out:
	if (r < 0)
		img_error_prefix(err, path);
	return r;
}

static int probe_fd(int fd, const char *path, ImgFormat want, ImgInfo *ret, FlError *err)
{
	uint8_t magic[4];
	uint64_t fsize;
	int r = img_fd_size(fd, &fsize);
	if (r == -EINVAL)
		return fl_error_set(err, r, "%s is not a regular file or block device", path);
	if (r < 0)
		return fl_error_set(err, r, "cannot stat %s: %s", path, strerror(-r));
	if (want == IMG_FMT_UNKNOWN) {
		want = IMG_FMT_RAW;
		if (fsize >= 4 && img_pread_full(fd, magic, 4, 0) == 0 && img_be32(magic) == QCOW2_MAGIC)
			want = IMG_FMT_QCOW2;
	}
	if (want == IMG_FMT_QCOW2)
		return qcow2_info_fd(fd, path, ret, err);
	*ret = (ImgInfo){ .format = IMG_FMT_RAW, .virtual_size = fsize, .file_size = fsize };
	return 0;
}

int img_qcow2_info(const char *path, ImgInfo *ret, FlError *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return fl_error_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
	return qcow2_info_fd(fd, path, ret, err);
}

int img_probe(const char *path, ImgInfo *ret, FlError *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return fl_error_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
	return probe_fd(fd, path, IMG_FMT_UNKNOWN, ret, err);
}

/* ---- Creation -------------------------------------------------------- */

int img_qcow2_create_overlay(const char *path, const char *backing_path,
			     const char *backing_format, uint64_t virtual_size,
			     unsigned cluster_bits, FlError *err)
{
	return img_qcow2_create_overlay_flags(path, backing_path, backing_format, virtual_size,
					      cluster_bits, 0, err);
}

int img_qcow2_create_overlay_flags(const char *path, const char *backing_path,
				   const char *backing_format, uint64_t virtual_size,
				   unsigned cluster_bits, unsigned flags, FlError *err)
{
	int r;
	if (!path || !*path)
		return fl_error_set(err, -EINVAL, "no image path given");
	if (flags & ~IMG_CREATE_NO_SYNC)
		return fl_error_set(err, -EINVAL, "unknown flags 0x%x", flags);
	if (cluster_bits == 0)
		cluster_bits = IMG_CLUSTER_BITS_DEFAULT;
	if (cluster_bits < IMG_CLUSTER_BITS_MIN || cluster_bits > IMG_CLUSTER_BITS_MAX)
		return fl_error_set(err, -EINVAL, "invalid cluster_bits %u", cluster_bits);
	const uint64_t cs = 1ull << cluster_bits;

	size_t blen = 0;
	char fmt[IMG_FORMAT_NAME_MAX] = "";
	if (backing_path) {
		blen = strlen(backing_path);
		if (!backing_name_ok(backing_path, blen))
			return fl_error_set(err, -EINVAL, "invalid backing file name '%s'", backing_path);
		char resolved[IMG_PATH_MAX];
		if (img_resolve_backing(path, backing_path, resolved, sizeof(resolved)) < 0)
			return fl_error_set(err, -ENAMETOOLONG, "backing path too long");
		ImgFormat want = IMG_FMT_UNKNOWN;
		if (backing_format) {
			want = img_format_from_name(backing_format);
			if (want == IMG_FMT_UNKNOWN)
				return fl_error_set(err, -EINVAL, "unsupported backing format '%s'",
						    backing_format);
		}
		_cleanup_close_ int bfd = open(resolved, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (bfd < 0)
			return fl_error_set(err, -errno, "backing file %s: %s", resolved, strerror(errno));
		ImgInfo bi;
		r = probe_fd(bfd, resolved, want, &bi, err);
		if (r < 0)
			return r;
		snprintf(fmt, sizeof(fmt), "%s", img_format_name(bi.format));
		if (virtual_size == 0)
			virtual_size = bi.virtual_size;
	} else if (virtual_size == 0) {
		return fl_error_set(err, -EINVAL, "a virtual size is required without a backing file");
	}
	if (virtual_size > IMG_MAX_VIRTUAL_SIZE)
		return fl_error_set(err, -EFBIG, "virtual size too large");
	virtual_size = (virtual_size + 511) & ~511ull;

	uint64_t l2_cover = cs * (cs / 8);
	uint64_t l1_size = (virtual_size + l2_cover - 1) / l2_cover;
	if (l1_size * 8 > QCOW2_MAX_L1_BYTES)
		return fl_error_set(err, -EFBIG, "virtual size too large for %llu-byte clusters",
				    (unsigned long long)cs);
	uint64_t l1_clusters = (l1_size * 8 + cs - 1) / cs;
	if (l1_clusters == 0)
		l1_clusters = 1;
	/* Fixed point: the refcount structures count themselves. */
	uint64_t per_block = cs * 8 / 16; /* refcount_order 4: 16-bit entries */
	uint64_t rt_clusters = 1, rb = 1, total;
	for (;;) {
		total = 1 + rt_clusters + rb + l1_clusters;
		uint64_t nrb = (total + per_block - 1) / per_block;
		uint64_t nrt = (nrb * 8 + cs - 1) / cs;
		if (nrb == rb && nrt == rt_clusters)
			break;
		rb = nrb;
		rt_clusters = nrt;
	}
	if (rt_clusters * cs > QCOW2_MAX_REFTABLE_BYTES)
		return fl_error_set(err, -EFBIG, "virtual size too large for this cluster size");
	const uint64_t rt_off = cs, rb_off = rt_off + rt_clusters * cs;
	const uint64_t l1_off = rb_off + rb * cs;

	/* Header cluster: header, backing-format extension, end marker, name. */
	_cleanup_free_ uint8_t *hdr = calloc(1, cs);
	if (!hdr)
		return fl_error_set(err, -ENOMEM, "out of memory");
	size_t off = QCOW2_V3_HEADER_LEN;
	if (backing_path) {
		size_t flen = strlen(fmt);
		img_put_be32(hdr + off, QCOW2_EXT_BACKING_FORMAT);
		img_put_be32(hdr + off + 4, (uint32_t)flen);
		memcpy(hdr + off + 8, fmt, flen);
		off += 8 + ((flen + 7) & ~(size_t)7);
	}
	off += 8; /* end-of-extensions marker (zeros) */
	if (off + blen > cs)
		return fl_error_set(err, -ENAMETOOLONG,
				    "backing file name does not fit in a %llu-byte cluster",
				    (unsigned long long)cs);
	img_put_be32(hdr + 0, QCOW2_MAGIC);
	img_put_be32(hdr + 4, 3);
	img_put_be64(hdr + 8, backing_path ? off : 0);
	img_put_be32(hdr + 16, (uint32_t)blen);
	img_put_be32(hdr + 20, cluster_bits);
	img_put_be64(hdr + 24, virtual_size);
	img_put_be32(hdr + 36, (uint32_t)l1_size);
	img_put_be64(hdr + 40, l1_off);
	img_put_be64(hdr + 48, rt_off);
	img_put_be32(hdr + 56, (uint32_t)rt_clusters);
	img_put_be32(hdr + 96, 4);
	img_put_be32(hdr + 100, QCOW2_V3_HEADER_LEN);
	if (backing_path)
		memcpy(hdr + off, backing_path, blen);

	size_t rt_bytes = (size_t)(rt_clusters * cs), rb_bytes = (size_t)(rb * cs);
	_cleanup_free_ uint8_t *meta = calloc(1, rt_bytes + rb_bytes);
	if (!meta)
		return fl_error_set(err, -ENOMEM, "out of memory");
	for (uint64_t i = 0; i < rb; i++)
		img_put_be64(meta + 8 * i, rb_off + i * cs);
	for (uint64_t i = 0; i < total; i++)
		img_put_be16(meta + rt_bytes + 2 * i, 1);

	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = img_tmpfile_near(path, &tmp, err);
	if (fd < 0)
		return fd;
	if (ftruncate(fd, (off_t)(total * cs)) < 0 || pwrite(fd, hdr, cs, 0) != (ssize_t)cs ||
	    pwrite(fd, meta, rt_bytes + rb_bytes, (off_t)rt_off) != (ssize_t)(rt_bytes + rb_bytes)) {
		r = errno ? -errno : -EIO;
		unlink(tmp);
		return fl_error_set(err, r, "cannot write %s: %s", tmp, strerror(-r));
	}
	return img_tmpfile_commit(fd, tmp, path, 0644, flags & IMG_CREATE_NO_SYNC, err);
}

/* ---- Chains ---------------------------------------------------------- */

struct ImgChain {
	size_t n;
	ImgChainLayer *layers;
};

void img_chain_free(ImgChain *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		free(c->layers[i].path);
	free(c->layers);
	free(c);
}

size_t img_chain_length(const ImgChain *c) { return c ? c->n : 0; }

const ImgChainLayer *img_chain_layer(const ImgChain *c, size_t i)
{
	return c && i < c->n ? &c->layers[i] : NULL;
}

int img_chain_resolve(const char *path, ImgFormat format, unsigned max_depth, ImgChain **ret,
		      FlError *err)
{
	if (max_depth == 0)
		max_depth = IMG_CHAIN_DEPTH_DEFAULT;
	if (max_depth > IMG_CHAIN_DEPTH_MAX)
		max_depth = IMG_CHAIN_DEPTH_MAX;
	_cleanup_(img_chain_freep) ImgChain *c = calloc(1, sizeof(*c));
	if (!c)
		return fl_error_set(err, -ENOMEM, "out of memory");
	_cleanup_free_ char *cur = strdup(path);
	if (!cur)
		return fl_error_set(err, -ENOMEM, "out of memory");
	ImgFormat fmt = format;
	size_t cap = 0;
	for (;;) {
		if (c->n >= max_depth)
			return fl_error_set(err, -E2BIG, "backing chain of %s is deeper than %u layers",
					    path, max_depth);
		_cleanup_close_ int fd = open(cur, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0) {
			int r = -errno;
			if (c->n == 0)
				return fl_error_set(err, r, "image %s: %s", cur, strerror(-r));
			return fl_error_set(err, r, "backing file %s of %s: %s", cur,
					    c->layers[c->n - 1].path, strerror(-r));
		}
		struct stat st;
		if (fstat(fd, &st) < 0)
			return fl_error_set(err, -errno, "cannot stat %s: %s", cur, strerror(errno));
		for (size_t i = 0; i < c->n; i++)
			if (c->layers[i].dev == st.st_dev && c->layers[i].ino == st.st_ino)
				return fl_error_set(err, -ELOOP,
						    "backing chain of %s loops: %s is also layer %zu (%s)",
						    path, cur, i, c->layers[i].path);
		if (c->n == cap) {
			size_t ncap = cap ? cap * 2 : 4;
			ImgChainLayer *nl = realloc(c->layers, ncap * sizeof(*nl));
			if (!nl)
				return fl_error_set(err, -ENOMEM, "out of memory");
			c->layers = nl;
			cap = ncap;
		}
		ImgChainLayer *l = &c->layers[c->n];
		memset(l, 0, sizeof(*l));
		int r = probe_fd(fd, cur, fmt, &l->info, err);
		if (r < 0)
			return r;
		l->dev = st.st_dev;
		l->ino = st.st_ino;
		l->path = TAKE_PTR(cur);
		c->n++;
		if (l->info.format != IMG_FMT_QCOW2 || !l->info.has_backing)
			break;
		fmt = IMG_FMT_UNKNOWN;
		if (l->info.backing_format[0]) {
			fmt = img_format_from_name(l->info.backing_format);
			if (fmt == IMG_FMT_UNKNOWN)
				return fl_error_set(err, -ENOTSUP, "%s: unsupported backing format '%s'",
						    l->path, l->info.backing_format);
		}
		cur = malloc(IMG_PATH_MAX);
		if (!cur)
			return fl_error_set(err, -ENOMEM, "out of memory");
		if (img_resolve_backing(l->path, l->info.backing_file, cur, IMG_PATH_MAX) < 0)
			return fl_error_set(err, -ENAMETOOLONG, "%s: backing path too long", l->path);
	}
	*ret = TAKE_PTR(c);
	return 0;
}
