// SPDX-License-Identifier: MIT
/*
 * Small file helpers for imgstore: atomic temp-file-then-rename creation,
 * full reads/writes, backing-name resolution, file/device sizes.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "internal.h"

int img_tmpfile_near(const char *path, char **ret_tmp, FlError *err)
{
	char *tmp = NULL;
	if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0)
		return fl_error_set(err, -ENOMEM, "out of memory");
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		int r = -errno;
		fl_error_set(err, r, "cannot create a temporary file for %s: %s", path, strerror(-r));
		free(tmp);
		return r;
	}
	*ret_tmp = tmp;
	return fd;
}

int img_fsync_dir_of(const char *path)
{
	_cleanup_free_ char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	_cleanup_close_ int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	if (fsync(dfd) < 0)
		return -errno;
	return 0;
}

int img_tmpfile_commit(int fd, const char *tmp, const char *path, mode_t mode, bool no_fsync,
		       FlError *err)
{
	int r;
	if (fchmod(fd, mode) < 0) {
		r = -errno;
		goto fail;
	}
	if (!no_fsync && fsync(fd) < 0) {
		r = -errno;
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		r = -errno;
		goto fail;
	}
	if (!no_fsync) {
		r = img_fsync_dir_of(path);
		if (r < 0)
			return fl_error_set(err, r, "cannot fsync the directory of %s: %s", path,
					    strerror(-r));
	}
	return 0;
fail:
	unlink(tmp);
	return fl_error_set(err, r, "cannot write %s: %s", path, strerror(-r));
}

int img_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENODATA; /* short file */
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int img_write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int img_resolve_backing(const char *image_path, const char *name, char *out, size_t outlen)
{
	int n;
	if (name[0] == '/') {
		n = snprintf(out, outlen, "%s", name);
	} else {
		_cleanup_free_ char *copy = strdup(image_path);
		if (!copy)
			return -ENOMEM;
		n = snprintf(out, outlen, "%s/%s", dirname(copy), name);
	}
	if (n < 0 || (size_t)n >= outlen)
		return -ENAMETOOLONG;
	return 0;
}

int img_fd_size(int fd, uint64_t *ret)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		uint64_t sz;
		if (ioctl(fd, BLKGETSIZE64, &sz) < 0)
			return -errno;
		*ret = sz;
		return 0;
	}
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	*ret = (uint64_t)st.st_size;
	return 0;
}
