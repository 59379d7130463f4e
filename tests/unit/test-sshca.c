// SPDX-License-Identifier: MIT
/*
 * Unit tests of the SSH user CA (appliance/sshca.c): the CA key is created
 * once and reused, and certificates fluid signs are read back by OpenSSH's
 * own `ssh-keygen -L` with the principals, validity window, key id, serial
 * and signing CA that were asked for, for Ed25519, ECDSA and RSA user keys;
 * bad keys and windows are refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <libssh/libssh.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sshca.h"

static char dir[] = "/tmp/test-sshca-XXXXXX";

static int setup(void **state)
{
	if (!mkdtemp(dir))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Runs a shell command, returns its stdout (malloc'd). */
static char *run(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t cap = 65536, len = 0;
	char *o = calloc(1, cap);
	size_t k;
	while ((k = fread(o + len, 1, cap - 1 - len, p)) > 0)
		len += k;
	o[len] = 0;
	pclose(p);
	return o;
}

static char *user_key(enum ssh_keytypes_e type, int bits)
{
	ssh_key k = NULL;
	assert_int_equal(ssh_pki_generate(type, bits, &k), SSH_OK);
	char *b64 = NULL;
	assert_int_equal(ssh_pki_export_pubkey_base64(k, &b64), SSH_OK);
	char *line = NULL;
	assert_true(asprintf(&line, "%s %s someone@laptop", ssh_key_type_to_char(ssh_key_type(k)), b64) > 0);
	ssh_string_free_char(b64);
	ssh_key_free(k);
	return line;
}

static void test_ca_created_once(void **state)
{
	FlSshCa *a = NULL, *b = NULL;
	FlError err = {0};
	char cadir[256];
	snprintf(cadir, sizeof(cadir), "%s/ca", dir);
	assert_int_equal(fl_sshca_open(cadir, &a, &err), 0);
	assert_int_equal(fl_sshca_open(cadir, &b, &err), 0);
	assert_string_equal(fl_sshca_public_key(a), fl_sshca_public_key(b));
	assert_true(!strncmp(fl_sshca_public_key(a), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", 32));
	struct stat st;
	char p[300];
	snprintf(p, sizeof(p), "%s/ca_key", cadir);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(cadir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	/* ssh-keygen agrees with our fingerprint of the public key file */
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "ssh-keygen -l -f '%s/ca_key.pub'", cadir);
	char *out = run(cmd);
	assert_non_null(strstr(out, fl_sshca_fingerprint(a)));
	free(out);
	/* the private key is PKCS#8 PEM that OpenSSL reads back */
	snprintf(cmd, sizeof(cmd), "openssl pkey -in '%s/ca_key' -noout -text 2>&1 | head -1", cadir);
	out = run(cmd);
	assert_non_null(strstr(out, "ED25519 Private-Key"));
	free(out);
	fl_sshca_free(a);
	fl_sshca_free(b);
}

static void fmt_time(char *buf, size_t len, time_t t)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
}

static void check_cert(FlSshCa *ca, const char *key, const char *type)
{
	const char *principals[] = {"root", "sandbox"};
	time_t now = time(NULL);
	FlSshCertSpec spec = {
		.public_key = key,
		.key_id = "fluid:cert-1:sbx-1:alice",
		.principals = principals,
		.n_principals = 2,
		.serial = 123456789,
		.valid_after = (uint64_t)now - 30,
		.valid_before = (uint64_t)now + 300,
	};
	char *cert = NULL, *fp = NULL;
	FlError err = {0};
	assert_int_equal(fl_sshca_sign(ca, &spec, &cert, &fp, &err), 0);
	assert_true(!strncmp(fp, "SHA256:", 7));
	char certtype[96];
	snprintf(certtype, sizeof(certtype), "%s-cert-v01@openssh.com ", type);
	assert_true(!strncmp(cert, certtype, strlen(certtype)));

	/* libssh parses it as a certificate too */
	char *b64 = strdup(cert + strlen(certtype));
	*strchr(b64, ' ') = 0;
	ssh_key ck = NULL;
	char ctn[96];
	snprintf(ctn, sizeof(ctn), "%s-cert-v01@openssh.com", type);
	assert_int_equal(ssh_pki_import_cert_base64(b64, ssh_key_type_from_name(ctn), &ck), SSH_OK);
	ssh_key_free(ck);
	free(b64);

	char path[300], cmd[400];
	snprintf(path, sizeof(path), "%s/cert-%s.pub", dir, type);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "%s\n", cert);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "TZ=UTC ssh-keygen -L -f '%s' 2>&1", path);
	char *out = run(cmd);
	char want[256], a[32], b[32];
	snprintf(want, sizeof(want), "Type: %s-cert-v01@openssh.com user certificate", type);
	assert_non_null(strstr(out, want));
	assert_non_null(strstr(out, "Key ID: \"fluid:cert-1:sbx-1:alice\""));
	assert_non_null(strstr(out, "Serial: 123456789"));
	fmt_time(a, sizeof(a), now - 30);
	fmt_time(b, sizeof(b), now + 300);
	snprintf(want, sizeof(want), "Valid: from %s to %s", a, b);
	if (!strstr(out, want))
		fprintf(stderr, "ssh-keygen -L said:\n%s\nwanted: %s\n", out, want);
	assert_non_null(strstr(out, want));
	assert_non_null(strstr(out, "Principals: \n                root\n                sandbox\n"));
	assert_non_null(strstr(out, "Critical Options: (none)"));
	assert_non_null(strstr(out, "permit-pty"));
	assert_non_null(strstr(out, "permit-port-forwarding"));
	assert_null(strstr(out, "permit-agent-forwarding"));
	snprintf(want, sizeof(want), "Signing CA: ED25519 %s", fl_sshca_fingerprint(ca));
	assert_non_null(strstr(out, want));
	snprintf(want, sizeof(want), "Public key: %s", fp);
	assert_non_null(strstr(out, fp));
	free(out);
	free(cert);
	free(fp);
}

static void test_sign_key_types(void **state)
{
	FlSshCa *ca = NULL;
	char cadir[256];
	snprintf(cadir, sizeof(cadir), "%s/ca", dir);
	assert_int_equal(fl_sshca_open(cadir, &ca, NULL), 0);
	char *k = user_key(SSH_KEYTYPE_ED25519, 0);
	check_cert(ca, k, "ssh-ed25519");
	free(k);
	k = user_key(SSH_KEYTYPE_ECDSA_P256, 256);
	check_cert(ca, k, "ecdsa-sha2-nistp256");
	free(k);
	k = user_key(SSH_KEYTYPE_RSA, 2048);
	check_cert(ca, k, "ssh-rsa");
	free(k);
	fl_sshca_free(ca);
}

static void test_refusals(void **state)
{
	FlSshCa *ca = NULL;
	char cadir[256];
	snprintf(cadir, sizeof(cadir), "%s/ca", dir);
	assert_int_equal(fl_sshca_open(cadir, &ca, NULL), 0);
	const char *pr[] = {"root"};
	char *good = user_key(SSH_KEYTYPE_ED25519, 0);
	FlSshCertSpec spec = {.public_key = good, .key_id = "k", .principals = pr, .n_principals = 1,
			      .valid_after = 100, .valid_before = 200};
	char *cert = NULL;
	FlError err = {0};
	const char *bad_keys[] = {
		"", "ssh-ed25519", "ssh-ed25519 !!!!", "ssh-ed25519 AAAA",
		"ssh-dss AAAAB3NzaC1kc3MAAACBAP", "ssh-ed25519-cert-v01@openssh.com AAAA x",
		"ecdsa-sha2-nistp256 AAAAC3NzaC1lZDI1NTE5AAAAIBvZ0Zt0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0",
	};
	for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
		spec.public_key = bad_keys[i];
		assert_int_equal(fl_sshca_sign(ca, &spec, &cert, NULL, &err), -EINVAL);
	}
	char *small = user_key(SSH_KEYTYPE_RSA, 1024);
	spec.public_key = small;
	assert_int_equal(fl_sshca_sign(ca, &spec, &cert, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "2048"));
	free(small);
	spec.public_key = good;
	spec.valid_before = 100;
	assert_int_equal(fl_sshca_sign(ca, &spec, &cert, NULL, &err), -EINVAL);
	spec.valid_before = 200;
	spec.key_id = "has space";
	assert_int_equal(fl_sshca_sign(ca, &spec, &cert, NULL, &err), -EINVAL);
	spec.key_id = "k";
	spec.n_principals = 0;
	assert_int_equal(fl_sshca_sign(ca, &spec, &cert, NULL, &err), -EINVAL);
	spec.n_principals = 1;
	assert_int_equal(fl_sshca_sign(ca, &spec, &cert, NULL, &err), 0);
	free(cert);
	free(good);
	fl_sshca_free(ca);
}

static void test_corrupt_ca_refused(void **state)
{
	char cadir[256], p[300];
	snprintf(cadir, sizeof(cadir), "%s/bad", dir);
	mkdir(cadir, 0700);
	snprintf(p, sizeof(p), "%s/ca_key", cadir);
	FILE *f = fopen(p, "w");
	fputs("not a key\n", f);
	fclose(f);
	FlSshCa *ca = NULL;
	FlError err = {0};
	assert_int_equal(fl_sshca_open(cadir, &ca, &err), -EINVAL);
	assert_null(ca);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ca_created_once),
		cmocka_unit_test(test_sign_key_types),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_corrupt_ca_refused),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
