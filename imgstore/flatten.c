// SPDX-License-Identifier: MIT
/*
 * img_flatten(): reads a qcow2 backing chain through its own L1/L2 tables
 * and writes a standalone raw or qcow2 image (promote a sandbox's disk into
 * a new base image).
 *
 * DESIGN: the chain reader is synchronous (pread; metadata is small and the
 * L1 of each layer is loaded once, one L2 table per layer is cached), the
 * writer is the io_uring pipeline of io.c, so reading the next chunk
 * overlaps with several writes in flight. All-zero output regions are never
 * written: raw output stays sparse, qcow2 output allocates only non-zero
 * clusters, placed consecutively after the header cluster; the L2 tables,
 * L1 table and refcount structures are appended after the data once the
 * data is known, then the header is written last and the file renamed into
 * place. Every table entry read from a layer is bounds-checked against the
 * layer's file before it is followed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>

#include "cleanup.h"
#include "internal.h"

typedef struct Layer {
	int fd;
	const char *path;
	const ImgInfo *info;
	uint64_t *l1;    /* host order, l1_size entries */
	uint8_t *l2;     /* cached L2 table (cluster_size bytes) */
	uint64_t l2_off; /* its offset, 0 = none */
} Layer;

typedef struct Reader {
	Layer *layers;
	size_t n;
	FlError *err;
} Reader;

static void reader_free(Reader *rd)
{
	for (size_t i = 0; i < rd->n; i++) {
		if (rd->layers[i].fd >= 0)
			close(rd->layers[i].fd);
		free(rd->layers[i].l1);
		free(rd->layers[i].l2);
	}
	free(rd->layers);
}

static int reader_open(Reader *rd, const ImgChain *c, FlError *err)
{
	rd->n = img_chain_length(c);
	rd->err = err;
	rd->layers = calloc(rd->n, sizeof(Layer));
	if (!rd->layers)
		return fl_error_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < rd->n; i++)
		rd->layers[i].fd = -1;
	for (size_t i = 0; i < rd->n; i++) {
		const ImgChainLayer *cl = img_chain_layer(c, i);
		Layer *l = &rd->layers[i];
		l->path = cl->path;
		l->info = &cl->info;
		l->fd = open(cl->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (l->fd < 0)
			return fl_error_set(err, -errno, "cannot open %s: %s", cl->path, strerror(errno));
		if (cl->info.format != IMG_FMT_QCOW2)
			continue;
		size_t bytes = (size_t)cl->info.l1_size * 8;
		l->l1 = malloc(bytes ? bytes : 8);
		l->l2 = malloc(cl->info.cluster_size);
		if (!l->l1 || !l->l2)
			return fl_error_set(err, -ENOMEM, "out of memory");
		_cleanup_free_ uint8_t *raw = malloc(bytes ? bytes : 8);
		if (!raw)
			return fl_error_set(err, -ENOMEM, "out of memory");
		int r = bytes ? img_pread_full(l->fd, raw, bytes, cl->info.l1_table_offset) : 0;
		if (r < 0)
			return fl_error_set(err, r, "cannot read the L1 table of %s: %s", cl->path,
					    strerror(-r));
		for (size_t k = 0; k < cl->info.l1_size; k++)
			l->l1[k] = img_be64(raw + 8 * k);
	}
	return 0;
}

/* Reads len bytes, zero-filling anything past the end of the file. */
static int pread_or_zero(Layer *l, uint8_t *buf, size_t len, uint64_t off, FlError *err)
{
	while (len) {
		ssize_t n = pread(l->fd, buf, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fl_error_set(err, -errno, "cannot read %s: %s", l->path, strerror(errno));
		}
		if (n == 0) {
			memset(buf, 0, len);
			return 0;
		}
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int read_chain(Reader *rd, size_t i, uint64_t off, uint8_t *buf, size_t len);

enum { CL_UNALLOC, CL_ZERO, CL_DATA };

/* What guest cluster cidx of layer l is: unallocated, zero, or data at *host. */
static int classify(Reader *rd, Layer *l, uint64_t cidx, uint64_t *host)
{
	const ImgInfo *in = l->info;
	const uint64_t cs = in->cluster_size, per_l2 = cs / 8;
	uint64_t l1i = cidx / per_l2, l2i = cidx % per_l2;
	uint64_t l2_off = l1i < in->l1_size ? l->l1[l1i] & QCOW2_OFFSET_MASK : 0;
	if (!l2_off)
		return CL_UNALLOC;
	if (l2_off & (cs - 1) || l2_off > in->file_size || cs > in->file_size - l2_off)
		return fl_error_set(rd->err, -EINVAL, "%s: L2 table offset 0x%llx outside the file",
				    l->path, (unsigned long long)l2_off);
	if (l->l2_off != l2_off) {
		int r = img_pread_full(l->fd, l->l2, (size_t)cs, l2_off);
		if (r < 0) {
			l->l2_off = 0;
			return fl_error_set(rd->err, r, "cannot read an L2 table of %s: %s", l->path,
					    strerror(-r));
		}
		l->l2_off = l2_off;
	}
	uint64_t e = img_be64(l->l2 + 8 * l2i);
	if (e & QCOW2_L2_COMPRESSED)
		return fl_error_set(rd->err, -ENOTSUP,
				    "%s: compressed cluster at guest offset %llu is not supported (convert it with qemu-img first)",
				    l->path, (unsigned long long)(cidx << in->cluster_bits));
	if (in->version >= 3 && (e & QCOW2_L2_ZERO))
		return CL_ZERO;
	uint64_t h = e & QCOW2_OFFSET_MASK;
	if (!h)
		return CL_UNALLOC;
	if (h & (cs - 1) || h >= in->file_size)
		return fl_error_set(rd->err, -EINVAL, "%s: data cluster offset 0x%llx outside the file",
				    l->path, (unsigned long long)h);
	*host = h;
	return CL_DATA;
}

/* Reads a qcow2 layer, one run of same-kind clusters at a time (contiguous
 * data clusters are read with one pread, unallocated runs fall through to
 * the backing layer in one call). */
static int read_qcow2(Reader *rd, size_t i, uint64_t off, uint8_t *buf, size_t len)
{
	Layer *l = &rd->layers[i];
	const ImgInfo *in = l->info;
	const uint64_t cs = in->cluster_size;
	while (len) {
		if (off >= in->virtual_size) {
			memset(buf, 0, len);
			return 0;
		}
		uint64_t limit = len;
		if (limit > in->virtual_size - off)
			limit = in->virtual_size - off;
		uint64_t in_cl = off & (cs - 1);
		uint64_t cidx = off >> in->cluster_bits, host = 0;
		int kind = classify(rd, l, cidx, &host);
		if (kind < 0)
			return kind;
		uint64_t piece = cs - in_cl;
		while (piece < limit) {
			uint64_t h2 = 0, next = cidx + 1 + (piece - (cs - in_cl)) / cs;
			int k2 = classify(rd, l, next, &h2);
			if (k2 < 0)
				return k2;
			if (k2 != kind || (kind == CL_DATA && h2 != host + (next - cidx) * cs))
				break;
			piece += cs;
		}
		if (piece > limit)
			piece = limit;
		int r = 0;
		if (kind == CL_ZERO)
			memset(buf, 0, piece);
		else if (kind == CL_DATA)
			r = pread_or_zero(l, buf, (size_t)piece, host + in_cl, rd->err);
		else if (i + 1 < rd->n)
			r = read_chain(rd, i + 1, off, buf, (size_t)piece);
		else
			memset(buf, 0, piece);
		if (r < 0)
			return r;
		buf += piece;
		off += piece;
		len -= (size_t)piece;
	}
	return 0;
}

static int read_chain(Reader *rd, size_t i, uint64_t off, uint8_t *buf, size_t len)
{
	Layer *l = &rd->layers[i];
	if (l->info->format == IMG_FMT_QCOW2)
		return read_qcow2(rd, i, off, buf, len);
	uint64_t vs = l->info->virtual_size;
	if (off >= vs) {
		memset(buf, 0, len);
		return 0;
	}
	size_t n = vs - off < len ? (size_t)(vs - off) : len;
	int r = pread_or_zero(l, buf, n, off, rd->err);
	if (r < 0)
		return r;
	memset(buf + n, 0, len - n);
	return 0;
}

/*
 * Bytes from off that are known to read as zeros without reading data: the
 * L1 entry of every qcow2 layer covering off is empty down to a layer that
 * ends before off. 0 = unknown (a raw layer, an allocated L2 table).
 * UINT64_MAX = zeros forever. Lets flatten skip huge unallocated ranges of
 * big sparse images in one step.
 */
static uint64_t known_zero(Reader *rd, size_t i, uint64_t off)
{
	Layer *l = &rd->layers[i];
	if (off >= l->info->virtual_size)
		return UINT64_MAX;
	if (l->info->format != IMG_FMT_QCOW2)
		return 0;
	uint64_t cs = l->info->cluster_size, span = cs * (cs / 8);
	uint64_t l1i = off / span;
	if (l1i < l->info->l1_size && (l->l1[l1i] & QCOW2_OFFSET_MASK))
		return 0;
	uint64_t n = span - off % span;
	if (i + 1 < rd->n) {
		uint64_t m = known_zero(rd, i + 1, off);
		if (m < n)
			n = m;
	}
	return n;
}

static bool all_zero(const uint8_t *b, size_t n)
{
	return n == 0 || (b[0] == 0 && memcmp(b, b + 1, n - 1) == 0);
}

/* ---- Raw output ------------------------------------------------------ */

typedef struct RawOut {
	Reader *rd;
	uint64_t pos, size;
} RawOut;

static int raw_fill(void *ud, uint8_t *buf, size_t cap, uint64_t *off, size_t *len)
{
	RawOut *o = ud;
	while (o->pos < o->size) {
		uint64_t z = known_zero(o->rd, 0, o->pos) & ~(uint64_t)4095;
		if (z) {
			o->pos = z > o->size - o->pos ? o->size : o->pos + z;
			continue;
		}
		size_t n = o->size - o->pos < cap ? (size_t)(o->size - o->pos) : cap;
		int r = read_chain(o->rd, 0, o->pos, buf, n);
		if (r < 0)
			return r;
		uint64_t at = o->pos;
		o->pos += n;
		if (all_zero(buf, n))
			continue;
		*off = at;
		*len = n;
		return 1;
	}
	return 0;
}

/* ---- qcow2 output ---------------------------------------------------- */

typedef struct QOut {
	Reader *rd;
	unsigned cb;
	uint64_t cs, vsize, gpos, host_next;
	uint64_t l1_size;
	uint8_t **l2; /* per L1 entry: big-endian L2 table or NULL */
} QOut;

/* Reads up to cap bytes of guest data at once, then keeps only the
 * non-zero clusters, packed at the front of buf for consecutive host
 * clusters. */
static int q_fill(void *ud, uint8_t *buf, size_t cap, uint64_t *off, size_t *len)
{
	QOut *q = ud;
	const uint64_t per_l2 = q->cs / 8;
	size_t k = 0;
	while (k == 0 && q->gpos < q->vsize) {
		uint64_t z = known_zero(q->rd, 0, q->gpos) & ~(q->cs - 1);
		if (z) {
			q->gpos = z > q->vsize - q->gpos ? q->vsize : q->gpos + z;
			continue;
		}
		size_t n = q->vsize - q->gpos < cap ? (size_t)(q->vsize - q->gpos) : cap;
		int r = read_chain(q->rd, 0, q->gpos, buf, n);
		if (r < 0)
			return r;
		size_t padded = (n + q->cs - 1) & ~(size_t)(q->cs - 1);
		memset(buf + n, 0, padded - n); /* cap is a multiple of the cluster size */
		for (size_t at = 0; at < padded; at += q->cs) {
			if (all_zero(buf + at, (size_t)q->cs))
				continue;
			uint64_t cidx = (q->gpos + at) >> q->cb, l1i = cidx / per_l2;
			if (!q->l2[l1i]) {
				q->l2[l1i] = calloc(1, (size_t)q->cs);
				if (!q->l2[l1i])
					return fl_error_set(q->rd->err, -ENOMEM, "out of memory");
			}
			img_put_be64(q->l2[l1i] + 8 * (cidx % per_l2), (q->host_next + k) | QCOW2_L2_COPIED);
			if (at != k)
				memmove(buf + k, buf + at, (size_t)q->cs);
			k += (size_t)q->cs;
		}
		q->gpos += padded;
	}
	if (k == 0)
		return 0;
	*off = q->host_next;
	*len = k;
	q->host_next += k;
	return 1;
}

/* Appends L2 tables, L1, refcount table and blocks after the data, then the header. */
static int q_finish(QOut *q, int fd, const char *tmp, FlError *err)
{
	const uint64_t cs = q->cs;
	_cleanup_free_ uint8_t *l1 = NULL, *meta = NULL, *hdr = NULL;
	uint64_t nl2 = 0;
	for (uint64_t i = 0; i < q->l1_size; i++)
		nl2 += q->l2[i] != NULL;
	uint64_t l1_clusters = (q->l1_size * 8 + cs - 1) / cs;
	if (!l1_clusters)
		l1_clusters = 1;
	uint64_t base = q->host_next / cs + nl2 + l1_clusters;
	uint64_t per_block = cs / 2, rt = 1, rb = 1, total;
	for (;;) {
		total = base + rt + rb;
		uint64_t nrb = (total + per_block - 1) / per_block, nrt = (nrb * 8 + cs - 1) / cs;
		if (nrb == rb && nrt == rt)
			break;
		rb = nrb;
		rt = nrt;
	}
	if (rt * cs > (8u << 20))
		return fl_error_set(err, -EFBIG, "flattened image too large");
	uint64_t pos = q->host_next;
	l1 = calloc(1, (size_t)(l1_clusters * cs));
	if (!l1)
		return fl_error_set(err, -ENOMEM, "out of memory");
	for (uint64_t i = 0; i < q->l1_size; i++) {
		if (!q->l2[i])
			continue;
		if (pwrite(fd, q->l2[i], cs, (off_t)pos) != (ssize_t)cs)
			goto io_fail;
		img_put_be64(l1 + 8 * i, pos | QCOW2_L2_COPIED);
		pos += cs;
	}
	uint64_t l1_off = pos;
	if (pwrite(fd, l1, l1_clusters * cs, (off_t)l1_off) != (ssize_t)(l1_clusters * cs))
		goto io_fail;
	pos += l1_clusters * cs;
	uint64_t rt_off = pos, rb_off = rt_off + rt * cs;
	size_t meta_len = (size_t)((rt + rb) * cs);
	meta = calloc(1, meta_len);
	if (!meta)
		return fl_error_set(err, -ENOMEM, "out of memory");
	for (uint64_t i = 0; i < rb; i++)
		img_put_be64(meta + 8 * i, rb_off + i * cs);
	for (uint64_t i = 0; i < total; i++)
		img_put_be16(meta + rt * cs + 2 * i, 1);
	if (pwrite(fd, meta, meta_len, (off_t)rt_off) != (ssize_t)meta_len)
		goto io_fail;
	hdr = calloc(1, (size_t)cs);
	if (!hdr)
		return fl_error_set(err, -ENOMEM, "out of memory");
	img_put_be32(hdr + 0, QCOW2_MAGIC);
	img_put_be32(hdr + 4, 3);
	img_put_be32(hdr + 20, q->cb);
	img_put_be64(hdr + 24, q->vsize);
	img_put_be32(hdr + 36, (uint32_t)q->l1_size);
	img_put_be64(hdr + 40, l1_off);
	img_put_be64(hdr + 48, rt_off);
	img_put_be32(hdr + 56, (uint32_t)rt);
	img_put_be32(hdr + 96, 4);
	img_put_be32(hdr + 100, QCOW2_V3_HEADER_LEN);
	if (pwrite(fd, hdr, cs, 0) != (ssize_t)cs)
		goto io_fail;
	return 0;
io_fail:;
	int r = errno ? -errno : -EIO;
	return fl_error_set(err, r, "cannot write %s: %s", tmp, strerror(-r));
}

int img_flatten(const char *path, ImgFormat format, const char *dst, ImgFormat out_format,
		const ImgIoOptions *opts, FlError *err)
{
	if (out_format != IMG_FMT_RAW && out_format != IMG_FMT_QCOW2)
		return fl_error_set(err, -EINVAL, "unsupported output format");
	_cleanup_(img_chain_freep) ImgChain *c = NULL;
	int r = img_chain_resolve(path, format, 0, &c, err);
	if (r < 0)
		return r;
	uint64_t vsize = img_chain_layer(c, 0)->info.virtual_size;
	Reader rd = { 0 };
	r = reader_open(&rd, c, err);
	if (r < 0) {
		reader_free(&rd);
		return r;
	}
	_cleanup_free_ char *tmp = NULL;
	int fd = img_tmpfile_near(dst, &tmp, err);
	if (fd < 0) {
		reader_free(&rd);
		return fd;
	}
	ImgIoOptions o = opts ? *opts : (ImgIoOptions){ 0 };
	QOut q = { 0 };
	if (out_format == IMG_FMT_RAW) {
		if (ftruncate(fd, (off_t)vsize) < 0) {
			r = fl_error_set(err, -errno, "cannot size %s: %s", tmp, strerror(errno));
			goto out;
		}
		RawOut ro = { .rd = &rd, .size = vsize };
		r = img__pipe_fill_run(fd, tmp, vsize, &o, raw_fill, &ro, NULL, err);
		if (r >= 0 && ftruncate(fd, (off_t)vsize) < 0)
			r = fl_error_set(err, -errno, "cannot size %s: %s", tmp, strerror(errno));
	} else {
		q.rd = &rd;
		q.cb = IMG_CLUSTER_BITS_DEFAULT;
		q.cs = 1ull << q.cb;
		q.vsize = (vsize + 511) & ~511ull;
		q.host_next = q.cs; /* cluster 0: header */
		uint64_t cover = q.cs * (q.cs / 8);
		q.l1_size = (q.vsize + cover - 1) / cover;
		if (q.l1_size * 8 > (32u << 20)) {
			r = fl_error_set(err, -EFBIG, "image too large");
			goto out;
		}
		q.l2 = calloc(q.l1_size ? q.l1_size : 1, sizeof(uint8_t *));
		if (!q.l2) {
			r = fl_error_set(err, -ENOMEM, "out of memory");
			goto out;
		}
		if (!o.chunk_size || o.chunk_size < q.cs)
			o.chunk_size = o.chunk_size ? q.cs : 1u << 20;
		o.chunk_size &= ~(size_t)(q.cs - 1);
		r = img__pipe_fill_run(fd, tmp, 0, &o, q_fill, &q, NULL, err);
		if (r >= 0)
			r = q_finish(&q, fd, tmp, err);
	}
	if (r >= 0)
		r = img_tmpfile_commit(fd, tmp, dst, 0644, o.no_fsync, err);
	else
		unlink(tmp);
out:
	if (r < 0 && tmp)
		unlink(tmp);
	if (q.l2) {
		for (uint64_t i = 0; i < q.l1_size; i++)
			free(q.l2[i]);
		free(q.l2);
	}
	close(fd);
	reader_free(&rd);
	return r;
}
