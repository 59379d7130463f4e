// SPDX-License-Identifier: MIT
/*
 * Bulk I/O with liburing: sparse-aware copy (image import), RAM-state
 * streams between a pipe and a file, and the write side of img_flatten().
 *
 * DESIGN: one small pipeline engine drives all of them. A fixed set of
 * aligned buffers ("slots") cycles FREE -> READING -> READY -> WRITING ->
 * FREE. The source is either positional reads through io_uring (files:
 * many in flight), sequential reads (pipes: one in flight, a slot is filled
 * until full or EOF) or a synchronous fill callback (flatten, which walks
 * qcow2 tables itself); the sink is either positional writes (files: many
 * in flight) or ordered writes (pipes: one in flight, in offset order).
 * Short reads and writes are resubmitted for the remainder. On any error
 * no new requests are issued and every request in flight is reaped before
 * the buffers are freed, so the kernel never writes into freed memory.
 * Everything runs on the calling thread; the ring lives for one call.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "internal.h"

#define IO_CHUNK_DEFAULT (1u << 20)
#define IO_DEPTH_DEFAULT 8u
#define IO_DEPTH_MAX 64u
#define IO_ALIGN 4096u

enum slot_state { SLOT_FREE, SLOT_READING, SLOT_READY, SLOT_WRITING };

typedef struct Slot {
	uint8_t *buf;
	uint64_t off;   /* destination offset of buf[0] */
	uint64_t src;   /* source offset of buf[0] (positional source) */
	size_t len;     /* bytes to move */
	size_t done;    /* bytes read (READING) or written (WRITING) so far */
	size_t pad;     /* zero bytes appended to len for an O_DIRECT tail write */
	bool direct;    /* written through fd_direct */
	enum slot_state state;
} Slot;

enum src_kind { SRC_PREAD, SRC_STREAM, SRC_FILL };
enum sink_kind { SINK_PWRITE, SINK_STREAM };

typedef struct Pipe Pipe;
/* Fills s (buf, off, len) with the next piece to write. Returns 1 when a
 * piece was produced, 0 at the end, -errno on failure. */
typedef int (*fill_fn)(Pipe *p, Slot *s, void *userdata);
/* Positional source: next range to copy. Returns 1, 0 at the end, -errno. */
typedef int (*range_fn)(Pipe *p, uint64_t *off, size_t *len, void *userdata);

struct Pipe {
	struct io_uring ring;
	bool ring_ok;
	Slot *slots;
	unsigned nslots;
	size_t chunk;
	enum src_kind src;
	enum sink_kind sink;
	int fd_in, fd_out;
	bool has_direct;        /* fd_direct: the output opened with O_DIRECT */
	int fd_direct;
	uint64_t end_limit;     /* output size when known: a tail write there may be padded */
	uint64_t sized;         /* grow_ahead: current file size we set */
	bool grow_ahead;        /* extend the file ahead of appending writes */
	range_fn next_range;
	fill_fn fill;
	void *userdata;
	uint64_t max_bytes;     /* SRC_STREAM: 0 = unlimited */
	bool src_done;
	bool stream_reading;    /* SRC_STREAM: a read is in flight */
	uint64_t stream_off;    /* SRC_STREAM: next destination offset */
	uint64_t next_write;    /* SINK_STREAM: offset that must be written next */
	unsigned inflight;
	uint64_t bytes;
	int error;
	char errwhat[32];
};

static int pipe_init(Pipe *p, const ImgIoOptions *opts, FlError *err)
{
	size_t chunk = opts && opts->chunk_size ? opts->chunk_size : IO_CHUNK_DEFAULT;
	chunk = (chunk + IO_ALIGN - 1) & ~(size_t)(IO_ALIGN - 1);
	if (chunk > (64u << 20))
		chunk = 64u << 20;
	unsigned depth = opts && opts->queue_depth ? opts->queue_depth : IO_DEPTH_DEFAULT;
	if (depth > IO_DEPTH_MAX)
		depth = IO_DEPTH_MAX;
	p->chunk = chunk;
	p->nslots = depth;
	p->slots = calloc(depth, sizeof(Slot));
	if (!p->slots)
		return fl_error_set(err, -ENOMEM, "out of memory");
	for (unsigned i = 0; i < depth; i++)
		if (posix_memalign((void **)&p->slots[i].buf, IO_ALIGN, chunk) != 0)
			return fl_error_set(err, -ENOMEM, "out of memory for I/O buffers");
	int r = io_uring_queue_init(depth * 2, &p->ring, 0);
	if (r < 0)
		return fl_error_set(err, r, "io_uring setup failed: %s", strerror(-r));
	p->ring_ok = true;
	return 0;
}

/* A second descriptor on the output with O_DIRECT, when the filesystem
 * supports it and the caller did not opt out. */
static void open_direct(Pipe *p, const char *path, const ImgIoOptions *opts)
{
	if (opts && opts->no_direct)
		return;
	int fd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
	if (fd >= 0) {
		p->fd_direct = fd;
		p->has_direct = true;
	}
}

static void pipe_done(Pipe *p)
{
	if (p->has_direct)
		close(p->fd_direct);
	if (p->ring_ok)
		io_uring_queue_exit(&p->ring);
	if (p->slots)
		for (unsigned i = 0; i < p->nslots; i++)
			free(p->slots[i].buf);
	free(p->slots);
}

static struct io_uring_sqe *get_sqe(Pipe *p)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&p->ring);
	if (!sqe) {
		io_uring_submit(&p->ring);
		sqe = io_uring_get_sqe(&p->ring);
	}
	return sqe; /* the ring has 2x slots entries: never NULL after submit */
}

static void submit_read(Pipe *p, unsigned i)
{
	Slot *s = &p->slots[i];
	struct io_uring_sqe *sqe = get_sqe(p);
	uint64_t off = p->src == SRC_STREAM ? (uint64_t)-1 : s->src + s->done;
	io_uring_prep_read(sqe, p->fd_in, s->buf + s->done, (unsigned)(s->len - s->done), off);
	io_uring_sqe_set_data64(sqe, i);
	s->state = SLOT_READING;
	p->inflight++;
	if (p->src == SRC_STREAM)
		p->stream_reading = true;
}

static void submit_write(Pipe *p, unsigned i)
{
	Slot *s = &p->slots[i];
	struct io_uring_sqe *sqe = get_sqe(p);
	uint64_t off = p->sink == SINK_STREAM ? (uint64_t)-1 : s->off + s->done;
	int fd = s->direct ? p->fd_direct : p->fd_out;
	io_uring_prep_write(sqe, fd, s->buf + s->done, (unsigned)(s->len - s->done), off);
	io_uring_sqe_set_data64(sqe, i);
	s->state = SLOT_WRITING;
	p->inflight++;
}

static void fail(Pipe *p, int r, const char *what)
{
	if (p->error)
		return;
	p->error = r;
	snprintf(p->errwhat, sizeof(p->errwhat), "%s", what);
}

/*
 * Positional writes go through O_DIRECT when offset and length are aligned
 * (no page-cache copy, truly asynchronous in io_uring); a short tail at the
 * known end of the output is zero-padded to the alignment (the caller
 * truncates the file afterwards); anything else uses the buffered fd.
 */
static void choose_fd(Pipe *p, Slot *s)
{
	s->pad = 0;
	s->direct = false;
	if (!p->has_direct || (s->off & (IO_ALIGN - 1)))
		return;
	if (!(s->len & (IO_ALIGN - 1))) {
		s->direct = true;
		return;
	}
	bool last = (p->end_limit && s->off + s->len == p->end_limit) ||
		    (p->src == SRC_STREAM && p->src_done);
	size_t padded = (s->len + IO_ALIGN - 1) & ~(size_t)(IO_ALIGN - 1);
	if (!last || padded > p->chunk)
		return;
	memset(s->buf + s->len, 0, padded - s->len);
	s->pad = padded - s->len;
	s->len = padded;
	s->direct = true;
}

/* Starts writes for READY slots the sink can accept now. */
static void start_writes(Pipe *p)
{
	if (p->sink == SINK_PWRITE) {
		for (unsigned i = 0; i < p->nslots; i++) {
			Slot *s = &p->slots[i];
			if (s->state != SLOT_READY)
				continue;
			/* Appending O_DIRECT writes that extend the file serialise
			 * on the inode in some filesystems: size the file ahead. */
			if (p->grow_ahead && s->off + s->len + IO_ALIGN > p->sized) {
				uint64_t want = s->off + s->len + (64ull << 20);
				if (ftruncate(p->fd_out, (off_t)want) == 0)
					p->sized = want;
			}
			choose_fd(p, s);
			s->done = 0;
			submit_write(p, i);
		}
		return;
	}
	for (unsigned i = 0; i < p->nslots; i++)
		if (p->slots[i].state == SLOT_WRITING)
			return; /* ordered sink: one at a time */
	for (unsigned i = 0; i < p->nslots; i++)
		if (p->slots[i].state == SLOT_READY && p->slots[i].off == p->next_write) {
			p->slots[i].done = 0;
			submit_write(p, i);
			return;
		}
}

/* Gives free slots new work from the source. */
static void start_reads(Pipe *p)
{
	for (unsigned i = 0; i < p->nslots && !p->src_done && !p->error; i++) {
		Slot *s = &p->slots[i];
		if (s->state != SLOT_FREE)
			continue;
		if (p->src == SRC_STREAM) {
			if (p->stream_reading)
				return;
			s->off = p->stream_off;
			s->len = p->chunk;
			s->done = 0;
			submit_read(p, i);
			return;
		}
		if (p->src == SRC_PREAD) {
			uint64_t off;
			size_t len;
			int r = p->next_range(p, &off, &len, p->userdata);
			if (r < 0) {
				fail(p, r, "seek");
				return;
			}
			if (r == 0) {
				p->src_done = true;
				return;
			}
			s->src = s->off = off;
			s->len = len;
			s->done = 0;
			submit_read(p, i);
			continue;
		}
		int r = p->fill(p, s, p->userdata);
		if (r < 0) {
			fail(p, r, "read");
			return;
		}
		if (r == 0) {
			p->src_done = true;
			return;
		}
		s->state = SLOT_READY;
	}
}

static void on_read(Pipe *p, Slot *s, unsigned i, int res)
{
	if (res < 0) {
		if (res == -EINTR || res == -EAGAIN) {
			submit_read(p, i);
			return;
		}
		fail(p, res, "read");
		s->state = SLOT_FREE;
		return;
	}
	s->done += (size_t)res;
	if (p->src == SRC_STREAM) {
		p->stream_reading = false;
		if (res == 0)
			p->src_done = true;
		if (p->max_bytes && s->off + s->done > p->max_bytes) {
			fail(p, -EFBIG, "read");
			s->state = SLOT_FREE;
			return;
		}
		if (res > 0 && s->done < s->len) {
			submit_read(p, i); /* keep filling this buffer */
			return;
		}
		if (s->done == 0) {
			s->state = SLOT_FREE;
			return;
		}
		s->len = s->done;
		p->stream_off += s->len;
		s->state = SLOT_READY;
		return;
	}
	if (res == 0) {
		fail(p, -EIO, "read (source shrank)");
		s->state = SLOT_FREE;
		return;
	}
	if (s->done < s->len) {
		submit_read(p, i);
		return;
	}
	s->state = SLOT_READY;
}

static void on_write(Pipe *p, Slot *s, unsigned i, int res)
{
	if (res < 0) {
		if (res == -EINTR || res == -EAGAIN) {
			submit_write(p, i);
			return;
		}
		fail(p, res, "write");
		s->state = SLOT_FREE;
		return;
	}
	if (res == 0) {
		fail(p, -EIO, "write");
		s->state = SLOT_FREE;
		return;
	}
	s->done += (size_t)res;
	if (s->done < s->len) {
		submit_write(p, i);
		return;
	}
	p->bytes += s->len - s->pad;
	if (p->sink == SINK_STREAM)
		p->next_write = s->off + s->len;
	s->state = SLOT_FREE;
}

static bool any_busy(Pipe *p)
{
	for (unsigned i = 0; i < p->nslots; i++)
		if (p->slots[i].state != SLOT_FREE)
			return true;
	return false;
}

/* Runs the pipeline to the end. Returns 0 or the first error. */
static int pipe_run(Pipe *p)
{
	for (;;) {
		if (!p->error) {
			start_reads(p);
			start_writes(p);
		}
		if (p->inflight == 0) {
			if (p->error || (p->src_done && !any_busy(p)))
				break;
			if (!any_busy(p))
				continue;
			/* READY slots the ordered sink cannot take yet cannot occur
			 * without a write in flight; guard against a stall anyway. */
			fail(p, -EIO, "pipeline");
			break;
		}
		io_uring_submit(&p->ring);
		struct io_uring_cqe *cqe;
		int r = io_uring_wait_cqe(&p->ring, &cqe);
		if (r == -EINTR)
			continue;
		if (r < 0) {
			/* Cannot reap: buffers must stay alive; leak rather than corrupt. */
			p->error = r;
			return r;
		}
		unsigned seen = 0, head;
		io_uring_for_each_cqe(&p->ring, head, cqe)
		{
			unsigned i = (unsigned)io_uring_cqe_get_data64(cqe);
			int res = cqe->res;
			seen++;
			p->inflight--;
			Slot *s = &p->slots[i];
			if (p->error) {
				s->state = SLOT_FREE;
				if (p->src == SRC_STREAM)
					p->stream_reading = false;
				continue;
			}
			if (s->state == SLOT_READING)
				on_read(p, s, i, res);
			else
				on_write(p, s, i, res);
		}
		io_uring_cq_advance(&p->ring, seen);
		if (p->error && p->inflight == 0)
			break;
	}
	return p->error;
}

/* ---- Copy ------------------------------------------------------------ */

typedef struct CopyState {
	uint64_t size, pos, data_end;
	bool sparse_ok;
} CopyState;

/* Next data range of the source, in chunk-sized pieces, skipping holes. */
static int copy_next(Pipe *p, uint64_t *off, size_t *len, void *ud)
{
	CopyState *c = ud;
	if (c->pos >= c->size)
		return 0;
	if (c->pos >= c->data_end) {
		if (!c->sparse_ok) {
			c->data_end = c->size;
		} else {
			off_t d = lseek(p->fd_in, (off_t)c->pos, SEEK_DATA);
			if (d < 0) {
				if (errno == ENXIO) { /* only a hole remains */
					c->pos = c->size;
					return 0;
				}
				if (errno != EINVAL && errno != ENOTSUP)
					return -errno;
				c->sparse_ok = false;
				c->data_end = c->size;
			} else {
				off_t h = lseek(p->fd_in, d, SEEK_HOLE);
				if (h < 0)
					return -errno;
				c->pos = (uint64_t)d;
				c->data_end = (uint64_t)h < c->size ? (uint64_t)h : c->size;
				if (c->pos >= c->size)
					return 0;
			}
		}
	}
	uint64_t n = c->data_end - c->pos;
	if (n > p->chunk)
		n = p->chunk;
	*off = c->pos;
	*len = (size_t)n;
	c->pos += n;
	return 1;
}

static int io_error(Pipe *p, const char *path, FlError *err)
{
	return fl_error_set(err, p->error, "%s failed on %s: %s", p->errwhat, path,
			    strerror(-p->error));
}

int img_copy_file(const char *src, const char *dst, const ImgIoOptions *opts,
		  uint64_t *ret_bytes, FlError *err)
{
	_cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return fl_error_set(err, -errno, "cannot open %s: %s", src, strerror(errno));
	CopyState cs = { .sparse_ok = true };
	int r = img_fd_size(in, &cs.size);
	if (r < 0)
		return fl_error_set(err, r, "cannot stat %s: %s", src, strerror(-r));
	struct stat st;
	if (fstat(in, &st) == 0 && !S_ISREG(st.st_mode))
		cs.sparse_ok = false;
	(void)posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int out = img_tmpfile_near(dst, &tmp, err);
	if (out < 0)
		return out;
	if (ftruncate(out, (off_t)cs.size) < 0) {
		r = -errno;
		unlink(tmp);
		return fl_error_set(err, r, "cannot size %s: %s", tmp, strerror(-r));
	}
	Pipe p = { .src = SRC_PREAD, .sink = SINK_PWRITE, .fd_in = in, .fd_out = out,
		   .next_range = copy_next, .userdata = &cs, .end_limit = cs.size };
	open_direct(&p, tmp, opts);
	r = pipe_init(&p, opts, err);
	if (r >= 0) {
		r = pipe_run(&p);
		if (r < 0)
			io_error(&p, src, err);
	}
	uint64_t bytes = p.bytes;
	pipe_done(&p);
	if (r >= 0 && ftruncate(out, (off_t)cs.size) < 0)
		r = fl_error_set(err, -errno, "cannot size %s: %s", tmp, strerror(errno));
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	r = img_tmpfile_commit(out, tmp, dst, 0644, opts && opts->no_fsync, err);
	if (r < 0)
		return r;
	if (ret_bytes)
		*ret_bytes = bytes;
	return 0;
}

/* ---- Streams --------------------------------------------------------- */

int img_stream_to_file(int fd_in, const char *path, uint64_t max_bytes,
		       const ImgIoOptions *opts, uint64_t *ret_bytes, FlError *err)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int out = img_tmpfile_near(path, &tmp, err);
	if (out < 0)
		return out;
	Pipe p = { .src = SRC_STREAM, .sink = SINK_PWRITE, .fd_in = fd_in, .fd_out = out,
		   .max_bytes = max_bytes, .grow_ahead = true };
	open_direct(&p, tmp, opts);
	int r = pipe_init(&p, opts, err);
	if (r >= 0) {
		r = pipe_run(&p);
		if (r < 0) {
			if (r == -EFBIG)
				fl_error_set(err, r, "stream into %s exceeds %llu bytes", path,
					     (unsigned long long)max_bytes);
			else
				io_error(&p, path, err);
		}
	}
	uint64_t bytes = p.bytes;
	pipe_done(&p);
	if (r >= 0 && ftruncate(out, (off_t)bytes) < 0)
		r = fl_error_set(err, -errno, "cannot size %s: %s", tmp, strerror(errno));
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	r = img_tmpfile_commit(out, tmp, path, 0600, opts && opts->no_fsync, err);
	if (r < 0)
		return r;
	if (ret_bytes)
		*ret_bytes = bytes;
	return 0;
}

int img_stream_from_file(const char *path, int fd_out, const ImgIoOptions *opts,
			 uint64_t *ret_bytes, FlError *err)
{
	_cleanup_close_ int in = open(path, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return fl_error_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
	CopyState cs = { .sparse_ok = false };
	int r = img_fd_size(in, &cs.size);
	if (r < 0)
		return fl_error_set(err, r, "cannot stat %s: %s", path, strerror(-r));
	(void)posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
	Pipe p = { .src = SRC_PREAD, .sink = SINK_STREAM, .fd_in = in, .fd_out = fd_out,
		   .next_range = copy_next, .userdata = &cs };
	r = pipe_init(&p, opts, err);
	if (r >= 0) {
		r = pipe_run(&p);
		if (r < 0)
			io_error(&p, path, err);
	}
	uint64_t bytes = p.bytes;
	pipe_done(&p);
	if (r < 0)
		return r;
	if (ret_bytes)
		*ret_bytes = bytes;
	return 0;
}

/* ---- Flatten: output side (the chain reader is in flatten.c) --------- */

typedef struct FillAdapter {
	img_fill_fn fill;
	void *ud;
} FillAdapter;

static int fill_adapter(Pipe *p, Slot *s, void *userdata)
{
	FillAdapter *a = userdata;
	uint64_t off = 0;
	size_t len = 0;
	int r = a->fill(a->ud, s->buf, p->chunk, &off, &len);
	if (r <= 0)
		return r;
	s->off = off;
	s->len = len;
	s->done = 0;
	return 1;
}

/* Drives fill() (synchronous producer) into positional io_uring writes. */
int img__pipe_fill_run(int fd_out, const char *out_path, uint64_t end_limit,
		       const ImgIoOptions *opts, img_fill_fn fill, void *ud, uint64_t *ret_bytes,
		       FlError *err)
{
	FillAdapter a = { fill, ud };
	Pipe p = { .src = SRC_FILL, .sink = SINK_PWRITE, .fd_in = -1, .fd_out = fd_out,
		   .fill = fill_adapter, .userdata = &a, .end_limit = end_limit };
	open_direct(&p, out_path, opts);
	int r = pipe_init(&p, opts, err);
	if (r >= 0) {
		r = pipe_run(&p);
		if (r < 0 && err && !err->code)
			fl_error_set(err, r, "%s failed: %s", p.errwhat, strerror(-r));
	}
	if (ret_bytes)
		*ret_bytes = p.bytes;
	pipe_done(&p);
	return r;
}
