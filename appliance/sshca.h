/* SPDX-License-Identifier: MIT */
/*
 * sshca: fluid's SSH user certificate authority. Issues short-lived OpenSSH
 * user certificates (PROTOCOL.certkeys, *-cert-v01@openssh.com) for a
 * user's public key, signed by an Ed25519 CA key that is generated once
 * under a directory (STATE/ssh/ca) and kept there.
 *
 * Why not libssh alone: libssh 0.10 parses keys and certificates but has no
 * public API to create a certificate or to sign arbitrary data. So libssh
 * validates and canonicalises the user's public key (ssh_pki_import_pubkey_
 * base64 / export), this file writes the certificate encoding itself, and
 * libcrypto (OpenSSL 3, which the OpenSSL flavour of libssh links anyway)
 * makes the Ed25519 signature. No ssh-keygen fork.
 *
 * Files in dir (created 0700): ca_key (PKCS#8 PEM, 0600), ca_key.pub
 * (OpenSSH one-line public key, 0644).
 *
 * Thread-safety: an FlSshCa is immutable after fl_sshca_open(); sign may run
 * on several threads at once.
 */
#ifndef FL_SSHCA_H
#define FL_SSHCA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define FL_SSHCA_MAX_PRINCIPALS 16
#define FL_SSHCA_MAX_PUBKEY_LEN 16384 /* an OpenSSH public key line */

typedef struct FlSshCa FlSshCa;

/* Loads the CA from dir, generating it first when dir has none.
 * -EINVAL when a key exists but cannot be read as an Ed25519 key. */
int fl_sshca_open(const char *dir, FlSshCa **ret, FlError *err);
void fl_sshca_free(FlSshCa *ca); /* accepts NULL */

/* "ssh-ed25519 AAAA... fluid-user-ca" (owned by ca). */
const char *fl_sshca_public_key(const FlSshCa *ca);
/* "SHA256:..." as ssh-keygen -l prints it (owned by ca). */
const char *fl_sshca_fingerprint(const FlSshCa *ca);

typedef struct FlSshCertSpec {
	const char *public_key;  /* user key, OpenSSH line "TYPE BASE64 [comment]" */
	const char *key_id;      /* printable, logged by sshd */
	const char *const *principals; /* user names allowed to log in */
	size_t n_principals;     /* 1..FL_SSHCA_MAX_PRINCIPALS */
	uint64_t serial;
	uint64_t valid_after;    /* seconds since the epoch */
	uint64_t valid_before;
} FlSshCertSpec;

/*
 * Signs a user certificate. *ret_cert: "TYPE-cert-v01@openssh.com BASE64
 * KEY_ID" (malloc'd). *ret_key_fingerprint (may be NULL): the user key's
 * "SHA256:..." (malloc'd). Extensions: permit-port-forwarding, permit-pty;
 * no critical options. -EINVAL for an unsupported or malformed key (a
 * certificate instead of a plain key, DSA, a bad principal or window).
 */
int fl_sshca_sign(const FlSshCa *ca, const FlSshCertSpec *spec, char **ret_cert,
		  char **ret_key_fingerprint, FlError *err);

#endif
