/* SPDX-License-Identifier: MIT */
/*
 * imgstore: fluid's disk-image library.
 *
 *  - qcow2, natively: create overlays (header, refcount table/block, L1 table
 *    written by us, no qemu-img fork), parse and validate qcow2 headers with
 *    explicit big-endian reads and bounds checks, resolve backing chains
 *    (depth limit, loop detection by device+inode, raw terminals).
 *  - A registry of base images and layers under one directory (for example
 *    STATE/images): immutable once frozen, content-identified, reference
 *    counted by holders (sandboxes, snapshots, templates), garbage-collected
 *    when nothing refers to them and no child layer depends on them.
 *  - Bulk I/O with liburing: import (sparse-aware copy), flatten a chain into
 *    a standalone image, stream RAM-state files to/from a pipe.
 *
 * DESIGN: every call is synchronous and may block on disk I/O: the engine
 * runs them on a worker thread, never on its event loop (except
 * img_qcow2_create_overlay(), which writes a few KiB and is meant for the
 * hot path). No global state: different threads may use different
 * ImgRegistry objects; one ImgRegistry is not thread-safe, but mutations are
 * serialised between processes with a flock on the registry directory. The
 * library never logs and never exits. Every function returning int returns
 * >= 0 on success or a negative errno; the optional FlError gets a message
 * naming the file involved.
 *
 * Paths written into qcow2 headers as backing names are stored as given
 * (relative names are resolved against the directory of the image that
 * contains them, as QEMU does).
 */
#ifndef FL_IMGSTORE_H
#define FL_IMGSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cleanup.h"
#include "error.h"

/* ---- Limits ---------------------------------------------------------- */

#define IMG_PATH_MAX 4096
#define IMG_BACKING_NAME_MAX 1023      /* QEMU's limit for backing names */
#define IMG_FORMAT_NAME_MAX 16         /* "qcow2", "raw" + NUL, with room */
#define IMG_CHAIN_DEPTH_DEFAULT 64     /* max_depth = 0 means this */
#define IMG_CHAIN_DEPTH_MAX 1024
#define IMG_MAX_VIRTUAL_SIZE (1ULL << 50) /* 1 PiB: refused above */
#define IMG_CLUSTER_BITS_MIN 9
#define IMG_CLUSTER_BITS_MAX 21
#define IMG_CLUSTER_BITS_DEFAULT 16    /* 64 KiB, QEMU's default */

/* ---- Formats and image information ----------------------------------- */

typedef enum ImgFormat {
	IMG_FMT_UNKNOWN = 0,
	IMG_FMT_RAW,
	IMG_FMT_QCOW2,
} ImgFormat;

/* "raw", "qcow2" or "unknown". */
const char *img_format_name(ImgFormat f);
/* Parses "raw"/"qcow2"; IMG_FMT_UNKNOWN for anything else (or NULL). */
ImgFormat img_format_from_name(const char *name);

typedef struct ImgInfo {
	ImgFormat format;
	uint32_t version;           /* qcow2: 2 or 3; raw: 0 */
	uint64_t virtual_size;      /* bytes the guest sees */
	uint64_t file_size;         /* bytes on the host (st_size) */
	uint32_t cluster_bits;      /* qcow2 only */
	uint32_t cluster_size;      /* qcow2 only */
	uint32_t refcount_order;    /* qcow2 only (v2: 4) */
	uint32_t l1_size;           /* qcow2: entries */
	uint64_t l1_table_offset;
	uint64_t refcount_table_offset;
	uint32_t refcount_table_clusters;
	uint32_t nb_snapshots;      /* internal snapshots (we never make them) */
	uint64_t incompatible_features;
	uint64_t compatible_features;
	uint64_t autoclear_features;
	bool dirty;                 /* incompatible bit 0 */
	bool corrupt;               /* incompatible bit 1 */
	bool has_backing;
	/* Backing name exactly as stored in the header (may be relative). */
	char backing_file[IMG_BACKING_NAME_MAX + 1];
	/* From the backing-format header extension; "" when absent. */
	char backing_format[IMG_FORMAT_NAME_MAX];
} ImgInfo;

/*
 * Pure qcow2 header parser (no I/O; this is what the fuzzer drives).
 * buf holds the first len bytes of the image file; file_size is the full
 * file size (offsets are checked against it). Everything the parser needs
 * (header, extensions, backing name) must lie in the first cluster and in
 * buf, as QEMU requires. Validates: magic, version 2/3, cluster_bits range,
 * sizes, table offsets aligned and inside the file, L1 large enough for the
 * virtual size, backing name length/offset/characters (protocol prefixes
 * like "json:" or "nbd:" are refused), header extensions walked with bounds.
 * Unknown incompatible feature bits (anything but dirty/corrupt) and
 * encryption are refused with -ENOTSUP. Other failures: -EINVAL.
 * On success fills *ret (format, file_size, ...).
 */
int img_qcow2_parse_header(const void *buf, size_t len, uint64_t file_size, ImgInfo *ret,
			   FlError *err);

/* Reads and parses the qcow2 header of path. -EMEDIUMTYPE if not qcow2. */
int img_qcow2_info(const char *path, ImgInfo *ret, FlError *err);

/*
 * Probes path: qcow2 if it starts with the qcow2 magic (then parsed as
 * img_qcow2_info does), raw otherwise (virtual size = file/device size).
 */
int img_probe(const char *path, ImgInfo *ret, FlError *err);

/*
 * Creates a qcow2 v3 image at path, atomically (temp file in the same
 * directory, fsync, rename, fsync of the directory; never leaves a partial
 * file at path; replaces an existing file at path).
 *   backing_path:   NULL for a standalone empty image; otherwise stored as
 *                   is in the header (relative = relative to path's dir).
 *                   The backing file must exist and be readable.
 *   backing_format: "qcow2" or "raw"; NULL = probe the backing file.
 *   virtual_size:   bytes; 0 = the backing file's virtual size (required
 *                   when there is no backing file). Rounded up to 512.
 *   cluster_bits:   9..21; 0 = IMG_CLUSTER_BITS_DEFAULT.
 * The file is created with mode 0644 (& ~umask is not applied).
 */
int img_qcow2_create_overlay(const char *path, const char *backing_path,
			     const char *backing_format, uint64_t virtual_size,
			     unsigned cluster_bits, FlError *err);

/*
 * Same, with flags. IMG_CREATE_NO_SYNC skips the two fsyncs: the file
 * still appears atomically (rename) if the process dies, but a power loss
 * right after may leave no file or an empty one. Meant for a sandbox's
 * throw-away active overlay on the hot path (the fsyncs are most of the
 * cost: ~4 ms vs ~0.3 ms here); snapshot layers should stay durable.
 */
#define IMG_CREATE_NO_SYNC 0x1u
int img_qcow2_create_overlay_flags(const char *path, const char *backing_path,
				   const char *backing_format, uint64_t virtual_size,
				   unsigned cluster_bits, unsigned flags, FlError *err);

/* ---- Backing chains -------------------------------------------------- */

typedef struct ImgChainLayer {
	char *path;      /* resolved path used to open the layer */
	ImgInfo info;
	dev_t dev;
	ino_t ino;
} ImgChainLayer;

typedef struct ImgChain ImgChain;

/*
 * Walks the backing chain starting at path. format: the top image's
 * format, or IMG_FMT_UNKNOWN to probe. A backing file's format comes from
 * the backing-format extension; when that is absent it is probed. Raw
 * images terminate the chain. max_depth: maximum number of layers
 * (0 = IMG_CHAIN_DEPTH_DEFAULT, capped at IMG_CHAIN_DEPTH_MAX).
 * Errors: -ENOENT (message names the missing file and who refers to it),
 * -ELOOP (a layer appears twice, by device+inode), -E2BIG (deeper than
 * max_depth), and the parse errors of img_qcow2_parse_header().
 * *ret is owned by the caller: img_chain_free().
 */
int img_chain_resolve(const char *path, ImgFormat format, unsigned max_depth, ImgChain **ret,
		      FlError *err);
void img_chain_free(ImgChain *c);
/* Number of layers (>= 1); layer 0 is the top image, the last the base. */
size_t img_chain_length(const ImgChain *c);
/* Borrowed pointer, valid until img_chain_free(); NULL if i is out of range. */
const ImgChainLayer *img_chain_layer(const ImgChain *c, size_t i);
FL_DEFINE_CLEANUP(ImgChain *, img_chain_free)  /* _cleanup_(img_chain_freep) */

/* ---- Bulk I/O (liburing) --------------------------------------------- */

typedef struct ImgIoOptions {
	size_t chunk_size;     /* bytes per request; 0 = 1 MiB (rounded to 4 KiB) */
	unsigned queue_depth;  /* requests in flight; 0 = 8 (max 64) */
	bool no_fsync;         /* skip the final fsync (benchmarks, temp files) */
	bool no_direct;        /* never use O_DIRECT for the output (see below) */
} ImgIoOptions;

/*
 * Output files are written through a second O_DIRECT descriptor when the
 * filesystem supports it (aligned chunks; the short tail is padded and the
 * file truncated back), which keeps multi-GB imports out of the page cache
 * and lets io_uring run the writes truly asynchronously. Unaligned pieces
 * and filesystems without O_DIRECT (tmpfs) fall back to buffered writes.
 */

/*
 * Copies src to dst with io_uring (several aligned chunk_size buffers in
 * flight). Sparse-aware: only data extents (SEEK_DATA/SEEK_HOLE) are read
 * and written; holes stay holes. Atomic: written to a temp file next to dst,
 * fsynced, renamed. dst gets mode 0644. opts may be NULL.
 * *ret_bytes (optional): bytes of data actually copied.
 */
int img_copy_file(const char *src, const char *dst, const ImgIoOptions *opts,
		  uint64_t *ret_bytes, FlError *err);

/*
 * Flattens the backing chain of path (format as img_chain_resolve()) into a
 * standalone image at dst (atomically, as img_copy_file()). Reads the
 * chain's L1/L2 tables itself: unallocated clusters fall through to the
 * backing file, zero clusters read as zeros, reads past a backing file's
 * size read as zeros. Compressed clusters are refused (-ENOTSUP, with the
 * file named). All-zero regions are left as holes in the output.
 * out_format: IMG_FMT_RAW or IMG_FMT_QCOW2 (a standalone qcow2 v3 with only
 * the non-zero clusters allocated). Output is written with io_uring.
 */
int img_flatten(const char *path, ImgFormat format, const char *dst, ImgFormat out_format,
		const ImgIoOptions *opts, FlError *err);

/*
 * Streams everything readable from fd_in (a pipe or socket, e.g. the read
 * end of QEMU's `migrate fd:` pipe) into a new file at path until EOF.
 * Atomic like img_copy_file(). Does not close fd_in. max_bytes: refuse with
 * -EFBIG beyond this (0 = unlimited). *ret_bytes (optional): bytes written.
 * EOF only comes when every write end is closed: after handing the write
 * end to QEMU (getfd), close the caller's own copy, or this never returns.
 * The file gets mode 0600 (guest RAM is sensitive).
 */
int img_stream_to_file(int fd_in, const char *path, uint64_t max_bytes,
		       const ImgIoOptions *opts, uint64_t *ret_bytes, FlError *err);

/*
 * Streams the file at path into fd_out (a pipe or socket, e.g. QEMU's
 * `migrate-incoming fd:` pipe). Does not close fd_out. Returns -EPIPE if the
 * reader goes away early. *ret_bytes (optional): bytes written.
 */
int img_stream_from_file(const char *path, int fd_out, const ImgIoOptions *opts,
			 uint64_t *ret_bytes, FlError *err);

/* ---- Registry of base images and layers ------------------------------ */

/*
 * Layout under the registry directory DIR:
 *   DIR/layers/<id>/disk          the image (0444 once frozen)
 *   DIR/layers/<id>/meta          key=value metadata (written atomically)
 *   DIR/refs/<id>/<holder>        one empty file per reference
 *   DIR/tmp/                      staging area (cleaned on open and gc)
 *   DIR/.lock                     flock for mutations
 *
 * Ids are 64 lowercase hex digits (SHA-256):
 *  - base images: sha256 of the imported image's bytes (computed once at
 *    import; importing the same image twice yields the same id).
 *  - layers: sha256("fluid-layer-v1\0" parent-id "\0" 16 random bytes),
 *    assigned when the layer is allocated, because a layer's id must exist
 *    while its content is still changing (the next overlay names it as its
 *    backing file) and hashing gigabytes on every snapshot is too slow.
 *    Freezing records the layer's size and, with IMG_FREEZE_HASH, the
 *    sha256 of its bytes (verifiable later with img_registry_verify()).
 *
 * Holders are names chosen by the caller ("sandbox-<uuid>",
 * "snapshot-<uuid>", "template-debian-12"): 1..128 characters from
 * [A-Za-z0-9._:-], not starting with '.'.
 */
#define IMG_ID_LEN 64
#define IMG_ID_SIZE (IMG_ID_LEN + 1)
#define IMG_HOLDER_MAX 128

typedef struct ImgRegistry ImgRegistry;

typedef enum ImgLayerState {
	IMG_LAYER_ACTIVE = 1,  /* allocated, writable (an overlay in use) */
	IMG_LAYER_FROZEN = 2,  /* immutable: 0444, never written again */
} ImgLayerState;

typedef enum ImgLayerKind {
	IMG_LAYER_BASE = 1,    /* imported image, no parent */
	IMG_LAYER_OVERLAY = 2, /* qcow2 overlay on a parent layer */
} ImgLayerKind;

typedef struct ImgLayer {
	char id[IMG_ID_SIZE];
	char parent[IMG_ID_SIZE];        /* "" for a base */
	ImgLayerKind kind;
	ImgLayerState state;
	ImgFormat format;
	uint64_t virtual_size;
	uint64_t size;                   /* file size when frozen */
	char sha256[IMG_ID_SIZE];        /* content hash, "" if not computed */
	int64_t created;                 /* unix seconds */
	char name[IMG_HOLDER_MAX + 1];   /* optional label from import, "" */
} ImgLayer;

/* Opens (creating if needed) the registry at dir. Cleans stale staging files. */
int img_registry_open(const char *dir, ImgRegistry **ret, FlError *err);
void img_registry_free(ImgRegistry *r);
FL_DEFINE_CLEANUP(ImgRegistry *, img_registry_free)

/*
 * Imports the image at src (raw or qcow2 without a backing file) as a
 * frozen base layer: copied with img_copy_file() into staging, hashed,
 * moved into place. If holder is non-NULL, a reference for it is recorded
 * before the layer becomes visible (so gc can never take it in between).
 * name: optional label stored in the metadata. If a layer with the same
 * content already exists, its id is returned (and the holder ref added).
 * Without a holder the new layer is unreferenced: the next gc removes it.
 * The copy is hashed after it is written (it is what the layer will hold),
 * which reads it back once.
 */
int img_registry_import(ImgRegistry *r, const char *src, const char *name, const char *holder,
			char ret_id[IMG_ID_SIZE], FlError *err);

/*
 * Allocates a new ACTIVE overlay layer on parent_id: creates
 * DIR/layers/<id>/disk as a qcow2 overlay whose backing name is the
 * relative "../<parent>/disk", records a reference for holder (required)
 * and returns the new id. The caller hands the disk path to QEMU
 * (img_registry_layer_path()). cluster_bits 0 = default.
 * The parent is normally FROZEN. It may still be ACTIVE for the snapshot
 * sequence: new_overlay(active) -> QMP blockdev-snapshot onto the new
 * overlay -> img_registry_freeze(old active). The parent keeps existing as
 * long as the child does (gc never removes a layer with children).
 */
int img_registry_new_overlay(ImgRegistry *r, const char *parent_id, const char *holder,
			     unsigned cluster_bits, char ret_id[IMG_ID_SIZE], FlError *err);

/*
 * Same, with IMG_CREATE_NO_SYNC: no fsyncs at all (overlay, metadata,
 * reference, publication). Every step is still a rename or a create, so a
 * crash of the process leaves a consistent registry; a power loss may lose
 * the new layer (and its reference) entirely. For a clone's throw-away
 * active layer on the hot path; freezing it later syncs it.
 */
int img_registry_new_overlay_flags(ImgRegistry *r, const char *parent_id, const char *holder,
				   unsigned cluster_bits, unsigned flags, char ret_id[IMG_ID_SIZE],
				   FlError *err);

#define IMG_FREEZE_HASH 0x1u  /* also hash the layer's bytes (slow for big layers) */

/*
 * Freezes an ACTIVE layer: fsync, chmod 0444, metadata state=frozen with
 * its size (and sha256 with IMG_FREEZE_HASH). The caller must have stopped
 * writing to it (e.g. after blockdev-snapshot-sync moved QEMU to a new
 * overlay). Freezing a frozen layer is a no-op returning 0.
 */
int img_registry_freeze(ImgRegistry *r, const char *id, unsigned flags, FlError *err);

/* Path of the layer's disk file into buf. -ENOENT if no such layer. */
int img_registry_layer_path(ImgRegistry *r, const char *id, char *buf, size_t len,
			    FlError *err);
/* Metadata of a layer. -ENOENT if no such layer. */
int img_registry_layer_info(ImgRegistry *r, const char *id, ImgLayer *ret, FlError *err);

/*
 * Calls fn for every layer (in no particular order). Stops early and
 * returns fn's value when it returns non-zero.
 */
typedef int (*img_layer_fn)(const ImgLayer *layer, void *userdata);
int img_registry_list(ImgRegistry *r, img_layer_fn fn, void *userdata, FlError *err);

/*
 * References. Adding an existing ref or removing a missing one is not an
 * error (idempotent, so a crashed caller can simply retry). Both are
 * durable when they return (rename/unlink + fsync of the directory).
 * img_registry_ref() fails with -ENOENT if the layer does not exist.
 */
int img_registry_ref(ImgRegistry *r, const char *id, const char *holder, FlError *err);
int img_registry_unref(ImgRegistry *r, const char *id, const char *holder, FlError *err);
/* Number of holders of id (not counting child layers), or -errno. */
int img_registry_refcount(ImgRegistry *r, const char *id, FlError *err);
/* Number of layers whose parent is id, or -errno. */
int img_registry_children(ImgRegistry *r, const char *id, FlError *err);

/*
 * Removes every layer with no holder and no child layer (repeatedly, so a
 * chain whose top lost its last ref goes away entirely), orphaned ref
 * directories and staging leftovers. *ret_removed (optional): layers removed.
 * A layer whose metadata cannot be parsed stops collection (-EBADMSG naming
 * it): its parent is unknown, so deleting anything could break it.
 */
int img_registry_gc(ImgRegistry *r, unsigned *ret_removed, FlError *err);

/*
 * Re-hashes a frozen layer and compares with the recorded sha256 (for a
 * base, the id itself). -EBADMSG on mismatch; -ENODATA if no hash was
 * recorded (a layer frozen without IMG_FREEZE_HASH).
 */
int img_registry_verify(ImgRegistry *r, const char *id, FlError *err);

/* ---- Helpers --------------------------------------------------------- */

/* SHA-256 of a whole file, as 64 hex digits + NUL. */
int img_sha256_file(const char *path, char ret_hex[IMG_ID_SIZE], FlError *err);

#endif
