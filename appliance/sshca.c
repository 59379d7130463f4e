// SPDX-License-Identifier: MIT
/*
 * sshca: the SSH user CA (see sshca.h for why libssh + libcrypto and no
 * ssh-keygen).
 *
 * DESIGN: the certificate is built in a growable byte buffer with the SSH
 * wire encodings (uint32/uint64 big endian, length-prefixed strings) in the
 * order PROTOCOL.certkeys gives; the user key's public fields are copied
 * from its canonical blob (libssh's export) after the key type string, so
 * every key type libssh accepts (ed25519, ecdsa, rsa) works without
 * per-type code. The signature covers every byte before it. The CA key is
 * generated with OpenSSL, written 0600 through a temporary file and
 * rename, and read back on every start.
 */
#include <errno.h>
#include <fcntl.h>
#include <libssh/libssh.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "sshca.h"
#include "state.h"

struct FlSshCa {
	EVP_PKEY *key;
	char *pub_line;
	char *fingerprint;
	unsigned char pub_blob[64];
	size_t pub_blob_len;
};

typedef struct Buf {
	unsigned char *p;
	size_t len, cap;
	bool oom;
} Buf;

static void put(Buf *b, const void *d, size_t n)
{
	if (b->oom || n == 0)
		return;
	if (b->len + n > b->cap) {
		size_t nc = b->cap ? b->cap * 2 : 512;
		while (nc < b->len + n)
			nc *= 2;
		unsigned char *np = realloc(b->p, nc);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = nc;
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void put_u32(Buf *b, uint32_t v)
{
	unsigned char x[4] = {v >> 24, v >> 16, v >> 8, v};
	put(b, x, 4);
}

static void put_u64(Buf *b, uint64_t v)
{
	put_u32(b, (uint32_t)(v >> 32));
	put_u32(b, (uint32_t)v);
}

static void put_str(Buf *b, const void *d, size_t n)
{
	put_u32(b, (uint32_t)n);
	put(b, d, n);
}

static void put_cstr(Buf *b, const char *s) { put_str(b, s, strlen(s)); }

/* Base64 without line breaks; malloc'd. pad=false drops '=' (fingerprints). */
static char *b64(const unsigned char *d, size_t n, bool pad)
{
	char *o = malloc(4 * ((n + 2) / 3) + 1);
	if (!o)
		return NULL;
	int k = EVP_EncodeBlock((unsigned char *)o, d, (int)n);
	if (!pad)
		while (k > 0 && o[k - 1] == '=')
			o[--k] = 0;
	return o;
}

/* Decodes standard base64 (with padding); *ret malloc'd. */
static int unb64(const char *s, unsigned char **ret, size_t *ret_len)
{
	size_t n = strlen(s);
	if (n == 0 || n % 4 || n > FL_SSHCA_MAX_PUBKEY_LEN)
		return -EINVAL;
	unsigned char *o = malloc(n / 4 * 3 + 1);
	if (!o)
		return -ENOMEM;
	int k = EVP_DecodeBlock(o, (const unsigned char *)s, (int)n);
	if (k < 0) {
		free(o);
		return -EINVAL;
	}
	if (s[n - 1] == '=')
		k--;
	if (s[n - 2] == '=')
		k--;
	*ret = o;
	*ret_len = (size_t)k;
	return 0;
}

static char *fingerprint(const unsigned char *blob, size_t n)
{
	unsigned char md[32];
	unsigned mdlen = 0;
	if (!EVP_Digest(blob, n, md, &mdlen, EVP_sha256(), NULL))
		return NULL;
	_cleanup_free_ char *e = b64(md, mdlen, false);
	char *o = NULL;
	if (e && asprintf(&o, "SHA256:%s", e) < 0)
		o = NULL;
	return o;
}

void fl_sshca_free(FlSshCa *ca)
{
	if (!ca)
		return;
	EVP_PKEY_free(ca->key);
	free(ca->pub_line);
	free(ca->fingerprint);
	free(ca);
}

static int write_key(const char *path, EVP_PKEY *key, FlError *err)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return fl_error_set(err, -errno, "cannot create %s: %m", tmp);
	FILE *f = fdopen(fd, "w");
	if (!f) {
		int r = -errno;
		close(fd);
		return fl_error_set(err, r, "fdopen: %m");
	}
	int ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
	if (fclose(f) != 0)
		ok = 0;
	if (!ok || rename(tmp, path) < 0) {
		unlink(tmp);
		return fl_error_set(err, -EIO, "cannot write the CA key %s", path);
	}
	return 0;
}

int fl_sshca_open(const char *dir, FlSshCa **ret, FlError *err)
{
	char path[4096], pubpath[4096];
	int r = fl_mkdir_p(dir, 0700);
	if (r < 0)
		return fl_error_set(err, r, "cannot create %s: %s", dir, strerror(-r));
	snprintf(path, sizeof(path), "%s/ca_key", dir);
	snprintf(pubpath, sizeof(pubpath), "%s/ca_key.pub", dir);

	FlSshCa *ca = calloc(1, sizeof(*ca));
	if (!ca)
		return fl_error_set(err, -ENOMEM, "out of memory");
	FILE *f = fopen(path, "re");
	if (f) {
		ca->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
		if (!ca->key || EVP_PKEY_get_id(ca->key) != EVP_PKEY_ED25519) {
			fl_sshca_free(ca);
			return fl_error_set(err, -EINVAL, "%s is not an Ed25519 private key", path);
		}
	} else if (errno == ENOENT) {
		ca->key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		if (!ca->key) {
			fl_sshca_free(ca);
			return fl_error_set(err, -EIO, "cannot generate an Ed25519 key");
		}
		r = write_key(path, ca->key, err);
		if (r < 0) {
			fl_sshca_free(ca);
			return r;
		}
	} else {
		r = -errno;
		fl_sshca_free(ca);
		return fl_error_set(err, r, "cannot open %s: %s", path, strerror(-r));
	}

	unsigned char raw[32];
	size_t rawlen = sizeof(raw);
	if (!EVP_PKEY_get_raw_public_key(ca->key, raw, &rawlen) || rawlen != 32) {
		fl_sshca_free(ca);
		return fl_error_set(err, -EINVAL, "cannot read the CA public key");
	}
	Buf b = {0};
	put_cstr(&b, "ssh-ed25519");
	put_str(&b, raw, 32);
	if (b.oom || b.len > sizeof(ca->pub_blob)) {
		free(b.p);
		fl_sshca_free(ca);
		return fl_error_set(err, -ENOMEM, "out of memory");
	}
	memcpy(ca->pub_blob, b.p, b.len);
	ca->pub_blob_len = b.len;
	free(b.p);
	_cleanup_free_ char *e = b64(ca->pub_blob, ca->pub_blob_len, true);
	ca->fingerprint = fingerprint(ca->pub_blob, ca->pub_blob_len);
	if (!e || !ca->fingerprint || asprintf(&ca->pub_line, "ssh-ed25519 %s fluid-user-ca", e) < 0) {
		ca->pub_line = NULL;
		fl_sshca_free(ca);
		return fl_error_set(err, -ENOMEM, "out of memory");
	}
	char line[256];
	snprintf(line, sizeof(line), "%s\n", ca->pub_line);
	r = fl_write_file_atomic(pubpath, line, strlen(line), 0644);
	if (r < 0) {
		fl_sshca_free(ca);
		return fl_error_set(err, r, "cannot write %s: %s", pubpath, strerror(-r));
	}
	*ret = ca;
	return 0;
}

const char *fl_sshca_public_key(const FlSshCa *ca) { return ca->pub_line; }
const char *fl_sshca_fingerprint(const FlSshCa *ca) { return ca->fingerprint; }

static bool printable(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

FL_DEFINE_CLEANUP(ssh_key, ssh_key_free)

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Modulus size of an RSA key's public fields (mpint e, mpint n); 0 if
 * malformed (libssh 0.10 has no public ssh_key_size). */
static size_t rsa_bits(const unsigned char *p, size_t len)
{
	if (len < 4 || get_u32(p) > len - 4)
		return 0;
	size_t el = get_u32(p);
	p += 4 + el, len -= 4 + el;
	if (len < 4 || get_u32(p) > len - 4)
		return 0;
	size_t nl = get_u32(p);
	p += 4;
	while (nl > 0 && *p == 0)
		p++, nl--;
	return nl * 8;
}

/* Parses "TYPE BASE64 [comment]" into the canonical blob and type name. */
static int parse_user_key(const char *line, unsigned char **ret_blob, size_t *ret_len,
			  char *type, size_t type_len, FlError *err)
{
	if (strlen(line) > FL_SSHCA_MAX_PUBKEY_LEN)
		return fl_error_set(err, -EINVAL, "public_key is too long");
	while (*line == ' ')
		line++;
	const char *sp = strchr(line, ' ');
	if (!sp || (size_t)(sp - line) >= type_len)
		return fl_error_set(err, -EINVAL, "public_key must be an OpenSSH public key line");
	memcpy(type, line, (size_t)(sp - line));
	type[sp - line] = 0;
	if (strstr(type, "-cert-"))
		return fl_error_set(err, -EINVAL, "public_key must be a plain key, not a certificate");
	if (strcmp(type, "ssh-ed25519") && strcmp(type, "ssh-rsa") &&
	    strcmp(type, "ecdsa-sha2-nistp256") && strcmp(type, "ecdsa-sha2-nistp384") &&
	    strcmp(type, "ecdsa-sha2-nistp521"))
		return fl_error_set(err, -EINVAL, "unsupported key type '%.64s'", type);
	const char *b = sp + 1;
	while (*b == ' ')
		b++;
	_cleanup_free_ char *b64s = strndup(b, strcspn(b, " \r\n"));
	if (!b64s)
		return fl_error_set(err, -ENOMEM, "out of memory");
	_cleanup_(ssh_key_freep) ssh_key key = NULL;
	enum ssh_keytypes_e kt = ssh_key_type_from_name(type);
	if (kt == SSH_KEYTYPE_UNKNOWN || ssh_pki_import_pubkey_base64(b64s, kt, &key) != SSH_OK)
		return fl_error_set(err, -EINVAL, "public_key is not a valid %s key", type);
	_cleanup_free_ char *canon = NULL;
	if (ssh_pki_export_pubkey_base64(key, &canon) != SSH_OK || !canon)
		return fl_error_set(err, -EINVAL, "cannot encode the public key");
	unsigned char *blob;
	size_t len;
	if (unb64(canon, &blob, &len) < 0)
		return fl_error_set(err, -EINVAL, "cannot decode the public key");
	/* The blob starts with the type string; the cert carries the rest. */
	size_t tl = strlen(type);
	if (len < 4 + tl || get_u32(blob) != tl ||
	    memcmp(blob + 4, type, tl)) {
		free(blob);
		return fl_error_set(err, -EINVAL, "public key type does not match its data");
	}
	if (kt == SSH_KEYTYPE_RSA && rsa_bits(blob + 4 + tl, len - 4 - tl) < 2048) {
		free(blob);
		return fl_error_set(err, -EINVAL, "RSA keys must have at least 2048 bits");
	}
	*ret_blob = blob;
	*ret_len = len;
	return 0;
}

int fl_sshca_sign(const FlSshCa *ca, const FlSshCertSpec *spec, char **ret_cert,
		  char **ret_key_fingerprint, FlError *err)
{
	char type[64];
	_cleanup_free_ unsigned char *blob = NULL;
	size_t blob_len = 0;

	if (!spec->public_key || !spec->key_id || !printable(spec->key_id, 256))
		return fl_error_set(err, -EINVAL, "key id must be 1-256 printable characters");
	if (spec->n_principals < 1 || spec->n_principals > FL_SSHCA_MAX_PRINCIPALS)
		return fl_error_set(err, -EINVAL, "1-%d principals", FL_SSHCA_MAX_PRINCIPALS);
	for (size_t i = 0; i < spec->n_principals; i++)
		if (!printable(spec->principals[i], 64))
			return fl_error_set(err, -EINVAL, "bad principal");
	if (spec->valid_before <= spec->valid_after)
		return fl_error_set(err, -EINVAL, "empty validity window");
	int r = parse_user_key(spec->public_key, &blob, &blob_len, type, sizeof(type), err);
	if (r < 0)
		return r;
	size_t tl = strlen(type);

	char certtype[96];
	snprintf(certtype, sizeof(certtype), "%s-cert-v01@openssh.com", type);
	unsigned char nonce[32];
	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return fl_error_set(err, -EIO, "no randomness");

	Buf b = {0}, pr = {0}, ext = {0};
	put_cstr(&b, certtype);
	put_str(&b, nonce, sizeof(nonce));
	put(&b, blob + 4 + tl, blob_len - 4 - tl);
	put_u64(&b, spec->serial);
	put_u32(&b, 1); /* SSH_CERT_TYPE_USER */
	put_cstr(&b, spec->key_id);
	for (size_t i = 0; i < spec->n_principals; i++)
		put_cstr(&pr, spec->principals[i]);
	put_str(&b, pr.p, pr.len);
	put_u64(&b, spec->valid_after);
	put_u64(&b, spec->valid_before);
	put_str(&b, NULL, 0); /* critical options: none */
	/* extensions, sorted by name; flag extensions carry an empty string */
	put_cstr(&ext, "permit-port-forwarding");
	put_str(&ext, NULL, 0);
	put_cstr(&ext, "permit-pty");
	put_str(&ext, NULL, 0);
	put_str(&b, ext.p, ext.len);
	put_str(&b, NULL, 0); /* reserved */
	put_str(&b, ca->pub_blob, ca->pub_blob_len);
	free(pr.p);
	free(ext.p);
	if (b.oom || pr.oom || ext.oom) {
		free(b.p);
		return fl_error_set(err, -ENOMEM, "out of memory");
	}

	unsigned char sig[64];
	size_t siglen = sizeof(sig);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = md && EVP_DigestSignInit(md, NULL, NULL, NULL, ca->key) == 1 &&
		  EVP_DigestSign(md, sig, &siglen, b.p, b.len) == 1 && siglen == 64;
	EVP_MD_CTX_free(md);
	if (!ok) {
		free(b.p);
		return fl_error_set(err, -EIO, "signing failed");
	}
	Buf sb = {0};
	put_cstr(&sb, "ssh-ed25519");
	put_str(&sb, sig, siglen);
	put_str(&b, sb.p, sb.len);
	free(sb.p);
	if (b.oom || sb.oom) {
		free(b.p);
		return fl_error_set(err, -ENOMEM, "out of memory");
	}

	_cleanup_free_ char *e = b64(b.p, b.len, true);
	free(b.p);
	char *line = NULL;
	if (!e || asprintf(&line, "%s %s %s", certtype, e, spec->key_id) < 0)
		return fl_error_set(err, -ENOMEM, "out of memory");
	if (ret_key_fingerprint) {
		*ret_key_fingerprint = fingerprint(blob, blob_len);
		if (!*ret_key_fingerprint) {
			free(line);
			return fl_error_set(err, -ENOMEM, "out of memory");
		}
	}
	*ret_cert = line;
	return 0;
}
