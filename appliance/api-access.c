// SPDX-License-Identifier: MIT
/*
 * api-access: short-lived SSH access to sandboxes (fluid.sh's /v1/access
 * endpoints, docs/ssh-access.md).
 *
 *   POST   /v1/access/request         {sandbox_id, user_id, public_key, ttl_minutes 1-10}
 *                                      -> 201 OpenSSH user certificate + connect command
 *   GET    /v1/access/ca-pubkey       the CA public key sshd trusts (TrustedUserCAKeys)
 *   GET    /v1/access/certificate/{id}
 *   DELETE /v1/access/certificate/{id} revoke (recorded; see docs for enforcement)
 *   GET    /v1/access/certificates    ?sandbox_id=&user_id=&active=
 *
 * DESIGN: an FL_SERVICE ("sshca", order 25: after the engine) opens the CA
 * under STATE/ssh/ca (created on first start) and loads the certificate
 * records from STATE/ssh/certificates.json; the service's state lives in
 * this file's one static (the access module is one per process, like the
 * server), guarded by a mutex that is held for record bookkeeping and the
 * atomic file write, never while signing. Records are bounded
 * (ACCESS_MAX_RECORDS): expired and revoked records are pruned oldest first;
 * when every record is still active, requests get 429. The certificate
 * names the principal "root" (agents have root in their sandbox) and
 * carries key id "fluid:<cert id>:<sandbox id>:<user id>", which sshd logs.
 * The SSH port is the engine's hostfwd for the sandbox (record "ssh_port",
 * 127.0.0.1 on the fluid host). Grants and revocations are also published
 * on the sandbox's event stream. For a running sandbox the grant also makes
 * the guest's sshd trust the CA (TrustedUserCAKeys via the guest agent,
 * install_guest_trust); "guest_trust" in the answer says whether that
 * worked. It runs after the record is written and never undoes the grant.
 *
 * With the database running, grants and revocations are audit rows
 * ("access.grant" with the certificate record, "access.revoke"); when the
 * audit write fails the grant or revocation is undone and the caller gets
 * 503, so nothing unaudited is handed out.
 *
 * Test hook: with FLUID_TEST_EVENTS=1 in the server's environment, sandbox
 * ids starting with "test-" need no engine record (no SSH port), so the
 * certificate path is testable without booting a VM (api-stream.c has the
 * same hook).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "auth.h"
#include "api-policies.h"
#include "cleanup.h"
#include "db.h"
#include "engine.h"
#include "events.h"
#include "http.h"
#include "log.h"
#include "sshca.h"
#include "state.h"


#define ACCESS_MAX_RECORDS 1024
#define ACCESS_SKEW_SECONDS 30 /* valid_after is backdated for clock skew */
#define ACCESS_PRINCIPAL "root"
#define ACCESS_GUEST_TIMEOUT_MS 60000 /* sshd restart in a busy TCG guest */

FL_DEFINE_CLEANUP(struct json_object *, json_object_put)

static struct {
	pthread_mutex_t lock;
	FlSshCa *ca;
	struct json_object *records; /* array, oldest first */
	char path[4096];
} acc = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int access_start(FlApp *app, FlError *err)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/ssh/ca", app->cfg->state_dir);
	int r = fl_sshca_open(dir, &acc.ca, err);
	if (r < 0)
		return fl_error_prefix(err, "ssh access CA");
	snprintf(acc.path, sizeof(acc.path), "%s/ssh/certificates.json", app->cfg->state_dir);
	_cleanup_free_ char *text = NULL;
	size_t len;
	r = fl_read_file(acc.path, 16u << 20, &text, &len);
	if (r >= 0) {
		acc.records = json_tokener_parse(text);
		if (!acc.records || !json_object_is_type(acc.records, json_type_array)) {
			fl_log_warn("%s is not a JSON array; starting with no certificate records",
				    acc.path);
			json_object_put(acc.records);
			acc.records = NULL;
		}
	} else if (r != -ENOENT) {
		fl_log_warn("cannot read %s: %s", acc.path, strerror(-r));
	}
	if (!acc.records)
		acc.records = json_object_new_array();
	fl_log_info("ssh access CA %s", fl_sshca_fingerprint(acc.ca));
	return acc.records ? 0 : fl_error_set(err, -ENOMEM, "out of memory");
}

static void access_stop(FlApp *app)
{
	pthread_mutex_lock(&acc.lock);
	fl_sshca_free(acc.ca);
	acc.ca = NULL;
	json_object_put(acc.records);
	acc.records = NULL;
	pthread_mutex_unlock(&acc.lock);
}
FL_SERVICE(sshca, 25, access_start, access_stop);

static int64_t jint(struct json_object *o, const char *k)
{
	struct json_object *v;
	return json_object_object_get_ex(o, k, &v) && v ? json_object_get_int64(v) : 0;
}

static const char *jstr(struct json_object *o, const char *k)
{
	struct json_object *v;
	return json_object_object_get_ex(o, k, &v) && v ? json_object_get_string(v) : NULL;
}

static struct json_object *rfc3339(int64_t t)
{
	char buf[32];
	struct tm tm;
	time_t tt = (time_t)t;
	gmtime_r(&tt, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_object_new_string(buf);
}

/* API view of a stored record (times as RFC 3339, computed status). */
static struct json_object *record_view(struct json_object *rec, int64_t now)
{
	struct json_object *o = json_object_new_object(), *v;
	static const char *const copy[] = {"id", "sandbox_id", "user_id", "principals", "key_id",
					   "serial", "public_key_fingerprint", NULL};
	for (size_t i = 0; copy[i]; i++)
		if (json_object_object_get_ex(rec, copy[i], &v))
			json_object_object_add(o, copy[i], json_object_get(v));
	json_object_object_add(o, "valid_after", rfc3339(jint(rec, "valid_after")));
	json_object_object_add(o, "valid_before", rfc3339(jint(rec, "valid_before")));
	json_object_object_add(o, "created_at", rfc3339(jint(rec, "created_at")));
	int64_t revoked = jint(rec, "revoked_at");
	json_object_object_add(o, "revoked_at", revoked ? rfc3339(revoked) : NULL);
	json_object_object_add(o, "status",
			       json_object_new_string(revoked ? "revoked"
						      : now >= jint(rec, "valid_before") ? "expired"
											  : "active"));
	return o;
}

/* Under acc.lock. */
static int save_records(void)
{
	const char *s = json_object_to_json_string_ext(acc.records, JSON_C_TO_STRING_PRETTY);
	return fl_write_file_atomic(acc.path, s, strlen(s), 0600);
}

/* Under acc.lock: makes room for one more record; -EUSERS when all are live. */
static int make_room(int64_t now)
{
	size_t n = json_object_array_length(acc.records);
	for (size_t i = 0; i < n && n >= ACCESS_MAX_RECORDS;) {
		struct json_object *r = json_object_array_get_idx(acc.records, i);
		if (jint(r, "revoked_at") || now >= jint(r, "valid_before")) {
			json_object_array_del_idx(acc.records, i, 1);
			n--;
		} else {
			i++;
		}
	}
	return n >= ACCESS_MAX_RECORDS ? -EUSERS : 0;
}

static bool valid_user_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 128)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr("._@-", c)))
			return false;
	}
	return true;
}

/*
 * Makes the guest's sshd trust the CA: writes the CA key and a
 * TrustedUserCAKeys drop-in through the guest agent (as root) and restarts
 * sshd. Idempotent; the CA line is base64 and fixed words, so it is safe in
 * single quotes. Returns 0, or -errno with err set (the grant still stands).
 */
static int install_guest_trust(FlApp *app, const char *sandbox_id, FlError *err)
{
	char script[1024];
	/* restart, not reload: systemd waits for the new sshd to be ready, so
	 * the connect command works as soon as the grant is answered (a
	 * SIGHUP reload leaves a window without a listener). Open sessions
	 * survive (the unit kills only the listener). Skipped when the guest
	 * already trusts this CA. */
	snprintf(script, sizeof(script),
		 "ca='%s'; conf=/etc/ssh/sshd_config.d/fluid-user-ca.conf; "
		 "[ \"$(cat /etc/ssh/fluid_user_ca.pub 2>/dev/null)\" = \"$ca\" ] && [ -f $conf ] && exit 0; "
		 "umask 022 && mkdir -p /etc/ssh/sshd_config.d && "
		 "printf '%%s\\n' \"$ca\" > /etc/ssh/fluid_user_ca.pub && "
		 "printf 'TrustedUserCAKeys /etc/ssh/fluid_user_ca.pub\\n' > $conf && "
		 "if command -v systemctl >/dev/null 2>&1; then "
		 "systemctl restart ssh 2>/dev/null || systemctl restart sshd 2>/dev/null || true; fi",
		 fl_sshca_public_key(acc.ca));
	FlExecSpec x = {.shell = script, .timeout_ms = ACCESS_GUEST_TIMEOUT_MS};
	FlExecResult res = {0};
	int r = fl_engine_exec(app->engine, sandbox_id, &x, NULL, NULL, &res, err);
	if (r < 0)
		return r;
	if (res.timed_out || res.exit_code != 0)
		return fl_error_set(err, -EIO, "the guest script exited with %d%s", res.exit_code,
				    res.timed_out ? " (timed out)" : "");
	return 0;
}

/*
 * Audits a grant or revocation when the database runs. An audit failure
 * means the change must not stand (API.md: 503, nothing half-done); the
 * caller undoes it. Returns 0 or a negative errno that maps to 503.
 */
static int audit(FlHttpReq *req, const char *action, const char *sandbox_id,
		 struct json_object *details)
{
	if (!req->app->db)
		return 0;
	FlAuditEvent ev = fl_audit_event(req, action, sandbox_id, details);
	FlError err = {0};
	int r = fl_db_audit(req->app->db, &ev, NULL, &err);
	if (r < 0) {
		fl_log_warn("ssh access: audit %s: %s", action, err.msg);
		return fl_http_fail(req, fl_http_status_from_errno(r) == 503 ? r : -ECONNREFUSED,
				    "cannot write the audit log: %s", err.msg);
	}
	return 0;
}

/* Under acc.lock: removes the record with this id. */
static void drop_record(const char *id)
{
	size_t n = acc.records ? json_object_array_length(acc.records) : 0;
	for (size_t i = 0; i < n; i++) {
		const char *rid = jstr(json_object_array_get_idx(acc.records, i), "id");
		if (rid && !strcmp(rid, id)) {
			json_object_array_del_idx(acc.records, i, 1);
			return;
		}
	}
}

static int post_access_request(FlHttpReq *req)
{
	static const char *const allowed[] = {"sandbox_id", "user_id", "public_key", "ttl_minutes",
					      NULL};
	_cleanup_(json_object_putp) struct json_object *body = NULL, *rec = NULL, *sb = NULL;
	const char *sandbox_id = NULL, *user_id = NULL, *public_key = NULL;
	uint64_t ttl = 0;
	int r;

	if (!acc.ca)
		return fl_http_fail(req, -ENODEV, "the SSH access CA is not running");
	if ((r = fl_http_read_json(req, &body)) < 0)
		return r;
	if ((r = fl_json_reject_unknown(body, allowed, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "sandbox_id", true, 63, &sandbox_id, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "user_id", true, 128, &user_id, &req->err)) < 0 ||
	    (r = fl_json_get_string(body, "public_key", true, FL_SSHCA_MAX_PUBKEY_LEN, &public_key,
				    &req->err)) < 0 ||
	    (r = fl_json_get_uint(body, "ttl_minutes", true, 1, 10, &ttl, &req->err)) < 0)
		return r;
	if (!valid_user_id(user_id))
		return fl_http_fail(req, -EINVAL,
				    "user_id must be 1-128 characters of A-Z a-z 0-9 . _ @ -");

	FlApp *app = req->app;
	const char *tm = getenv("FLUID_TEST_EVENTS");
	if (tm && !strcmp(tm, "1") && !strncmp(sandbox_id, "test-", 5)) {
		/* test hook (as in api-stream.c): a sandbox without a VM */
	} else if (!app->engine) {
		return fl_http_fail(req, -ENODEV, "the sandbox engine is not running");
	} else {
		FlError err = {0};
		r = fl_engine_get(app->engine, sandbox_id, &sb, &err);
		if (r < 0)
			return fl_http_fail(req, r, "%s", err.msg[0] ? err.msg : "no such sandbox");
	}
	const char *state = jstr(sb, "state");
	if (state && !strcmp(state, "DESTROYED"))
		return fl_http_fail(req, -ENOENT, "sandbox %s is destroyed", sandbox_id);
	if (sb && (r = fl_api_policy_interactive(req, sandbox_id, "ssh access")) < 0)
		return r;
	int64_t ssh_port = jint(sb, "ssh_port");

	uint8_t rnd[20];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return fl_http_fail(req, -EIO, "no randomness");
	char id[48];
	int k = snprintf(id, sizeof(id), "cert-");
	for (size_t i = 0; i < 12; i++)
		k += snprintf(id + k, sizeof(id) - (size_t)k, "%02x", rnd[i]);
	uint64_t serial = 0;
	memcpy(&serial, rnd + 12, 8);
	serial &= INT64_MAX; /* stays exact in JSON */

	int64_t now = (int64_t)time(NULL);
	char key_id[300];
	snprintf(key_id, sizeof(key_id), "fluid:%s:%s:%s", id, sandbox_id, user_id);
	const char *principals[] = {ACCESS_PRINCIPAL};
	FlSshCertSpec spec = {
		.public_key = public_key,
		.key_id = key_id,
		.principals = principals,
		.n_principals = 1,
		.serial = serial,
		.valid_after = (uint64_t)(now - ACCESS_SKEW_SECONDS),
		.valid_before = (uint64_t)now + ttl * 60,
	};
	_cleanup_free_ char *cert = NULL, *fp = NULL;
	r = fl_sshca_sign(acc.ca, &spec, &cert, &fp, &req->err);
	if (r < 0)
		return r;

	rec = json_object_new_object();
	struct json_object *pr = json_object_new_array();
	json_object_array_add(pr, json_object_new_string(ACCESS_PRINCIPAL));
	json_object_object_add(rec, "id", json_object_new_string(id));
	json_object_object_add(rec, "sandbox_id", json_object_new_string(sandbox_id));
	json_object_object_add(rec, "user_id", json_object_new_string(user_id));
	json_object_object_add(rec, "principals", pr);
	json_object_object_add(rec, "key_id", json_object_new_string(key_id));
	json_object_object_add(rec, "serial", json_object_new_int64((int64_t)serial));
	json_object_object_add(rec, "public_key_fingerprint", json_object_new_string(fp));
	json_object_object_add(rec, "valid_after", json_object_new_int64((int64_t)spec.valid_after));
	json_object_object_add(rec, "valid_before", json_object_new_int64((int64_t)spec.valid_before));
	json_object_object_add(rec, "created_at", json_object_new_int64(now));
	json_object_object_add(rec, "revoked_at", NULL);

	pthread_mutex_lock(&acc.lock);
	r = acc.records ? make_room(now) : -ENODEV;
	if (r == 0) {
		json_object_array_add(acc.records, json_object_get(rec));
		r = save_records();
		if (r < 0) /* not acknowledged: not kept */
			json_object_array_del_idx(acc.records,
						  json_object_array_length(acc.records) - 1, 1);
	}
	pthread_mutex_unlock(&acc.lock);
	if (r == -EUSERS)
		return fl_http_fail(req, r, "too many active certificates (%d)", ACCESS_MAX_RECORDS);
	if (r < 0)
		return fl_http_fail(req, r, "cannot record the certificate: %s", strerror(-r));
	r = audit(req, "access.grant", sandbox_id, rec);
	if (r < 0) {
		pthread_mutex_lock(&acc.lock);
		drop_record(id);
		if (save_records() < 0)
			fl_log_warn("ssh access: cannot rewrite %s", acc.path);
		pthread_mutex_unlock(&acc.lock);
		return r; /* the certificate is never handed out */
	}

	_cleanup_(json_object_putp) struct json_object *out = json_object_new_object();
	json_object_object_add(out, "certificate_id", json_object_new_string(id));
	json_object_object_add(out, "certificate", json_object_new_string(cert));
	json_object_object_add(out, "ca_public_key", json_object_new_string(fl_sshca_public_key(acc.ca)));
	json_object_object_add(out, "valid_after", rfc3339((int64_t)spec.valid_after));
	json_object_object_add(out, "valid_before", rfc3339((int64_t)spec.valid_before));
	json_object_object_add(out, "principals", json_object_get(pr));
	json_object_object_add(out, "username", json_object_new_string(ACCESS_PRINCIPAL));
	json_object_object_add(out, "ssh_host", json_object_new_string("127.0.0.1"));
	bool running = state && !strcmp(state, "RUNNING");
	if (ssh_port > 0 && running) {
		FlError gerr = {0};
		r = install_guest_trust(app, sandbox_id, &gerr);
		json_object_object_add(out, "guest_trust", json_object_new_string(r < 0 ? "failed" : "installed"));
		if (r < 0) {
			fl_log_warn("ssh access: cannot install the CA in %s: %s", sandbox_id, gerr.msg);
			json_object_object_add(out, "guest_trust_error", json_object_new_string(gerr.msg));
		}
	} else {
		json_object_object_add(out, "guest_trust", json_object_new_string("not_installed"));
	}
	if (ssh_port > 0) {
		char cmd[256];
		snprintf(cmd, sizeof(cmd),
			 "ssh -i <private-key> -o CertificateFile=<certificate-file> -p %" PRId64
			 " %s@127.0.0.1",
			 ssh_port, ACCESS_PRINCIPAL);
		json_object_object_add(out, "ssh_port", json_object_new_int64(ssh_port));
		json_object_object_add(out, "connect_command", json_object_new_string(cmd));
		json_object_object_add(out, "note",
				       json_object_new_string("the port is forwarded on the fluid host's "
							      "loopback; guest_trust says whether the "
							      "guest's sshd was told to trust "
							      "ca_public_key (docs/ssh-access.md)"));
	} else {
		json_object_object_add(out, "ssh_port", NULL);
		json_object_object_add(out, "connect_command", NULL);
		json_object_object_add(out, "note",
				       json_object_new_string("this sandbox has no SSH port forward "
							      "(network none, or not started yet)"));
	}

	struct json_object *ev = json_object_new_object();
	json_object_object_add(ev, "certificate_id", json_object_new_string(id));
	json_object_object_add(ev, "user_id", json_object_new_string(user_id));
	json_object_object_add(ev, "valid_before", rfc3339((int64_t)spec.valid_before));
	fl_events_publish(sandbox_id, "access.granted", ev);
	json_object_put(ev);
	fl_log_info("ssh access: %s for %s on %s until +%" PRIu64 " min (%s)", id, user_id,
		    sandbox_id, ttl, fp);
	return fl_http_send_json(req, 201, out);
}
FL_ROUTE(post_access_request, "POST", "/v1/access/request", FL_ROLE_AGENT);

/* "ssh-ed25519 AAAA... [comment]": a known type, base64, one printable line. */
static bool public_key_ok(const char *k)
{
	static const char *const types[] = {"ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-nistp256 ",
					    "ecdsa-sha2-nistp384 ", "ecdsa-sha2-nistp521 ",
					    "sk-ssh-ed25519@openssh.com "};
	const char *b = NULL;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]) && !b; i++)
		if (!strncmp(k, types[i], strlen(types[i])))
			b = k + strlen(types[i]);
	if (!b || !*b)
		return false;
	size_t n = strspn(b, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=");
	if (n < 16 || (b[n] && b[n] != ' '))
		return false;
	for (const char *p = k; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/*
 * POST /v1/sandboxes/{id}/sshkey {public_key, username} -> 204 (fluid.sh):
 * appends the key to the user's authorized_keys in the guest. The key goes
 * through stdin and the user name as an argument, never into a shell line.
 */
static int post_sshkey(FlHttpReq *req)
{
	static const char *const allowed[] = {"public_key", "username", NULL};
	FlApp *app = req->app;
	const char *id = fl_http_param(req, "id");
	_cleanup_(json_object_putp) struct json_object *body = NULL;
	int r = fl_http_read_json(req, &body);
	if (r < 0)
		return r;
	FlError err = {0};
	const char *key, *user;
	if (fl_json_reject_unknown(body, allowed, &err) < 0 ||
	    fl_json_get_string(body, "public_key", true, 8192, &key, &err) < 0 ||
	    fl_json_get_string(body, "username", true, 32, &user, &err) < 0)
		return fl_http_fail(req, -EINVAL, "%s", err.msg);
	if (!public_key_ok(key))
		return fl_http_fail(req, -EINVAL, "public_key must be one OpenSSH public key line");
	bool user_ok = (user[0] >= 'a' && user[0] <= 'z') || user[0] == '_';
	for (const char *p = user; *p && user_ok; p++)
		user_ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-';
	if (!user_ok)
		return fl_http_fail(req, -EINVAL, "username must match [a-z_][a-z0-9_-]*");
	if (!app->engine)
		return fl_http_fail(req, -ENODEV, "the sandbox engine is not available");
	if ((r = fl_api_policy_interactive(req, id, "ssh key")) < 0)
		return r;
	static const char script[] =
		"u=$1; h=$(awk -F: -v u=\"$u\" '$1 == u { print $6 }' /etc/passwd); "
		"[ -n \"$h\" ] || exit 3; umask 077; mkdir -p \"$h/.ssh\" && "
		"cat >> \"$h/.ssh/authorized_keys\" && chown -R \"$u\" \"$h/.ssh\"";
	const char *argv[] = {"/bin/sh", "-c", script, "sh", user, NULL};
	char line[8200];
	snprintf(line, sizeof(line), "%s\n", key);
	FlExecSpec x = {.argv = argv, .timeout_ms = ACCESS_GUEST_TIMEOUT_MS,
			.stdin_data = line, .stdin_len = strlen(line)};
	FlExecResult res = {0};
	r = fl_engine_exec(app->engine, id, &x, NULL, NULL, &res, &err);
	if (r < 0)
		return fl_http_fail(req, r, "%s", err.msg);
	if (res.exit_code == 3)
		return fl_http_fail(req, -EINVAL, "no user '%s' in the sandbox", user);
	if (res.exit_code != 0 || res.timed_out)
		return fl_http_fail(req, -EIO, "installing the key failed in the guest (exit %d)", res.exit_code);
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "username", json_object_new_string(user));
	r = audit(req, "sandbox.sshkey", id, d);
	json_object_put(d);
	if (r < 0)
		return r;
	return fl_http_send_json(req, 204, NULL);
}
FL_ROUTE(post_sshkey, "POST", "/v1/sandboxes/{id}/sshkey", FL_ROLE_AGENT);

static int get_ca_pubkey(FlHttpReq *req)
{
	if (!acc.ca)
		return fl_http_fail(req, -ENODEV, "the SSH access CA is not running");
	_cleanup_(json_object_putp) struct json_object *out = json_object_new_object();
	json_object_object_add(out, "public_key", json_object_new_string(fl_sshca_public_key(acc.ca)));
	json_object_object_add(out, "fingerprint", json_object_new_string(fl_sshca_fingerprint(acc.ca)));
	return fl_http_send_json(req, 200, out);
}
FL_ROUTE(get_ca_pubkey, "GET", "/v1/access/ca-pubkey", FL_ROLE_AGENT);

/* Under acc.lock. */
static struct json_object *find_record(const char *id)
{
	size_t n = acc.records ? json_object_array_length(acc.records) : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *r = json_object_array_get_idx(acc.records, i);
		const char *rid = jstr(r, "id");
		if (rid && !strcmp(rid, id))
			return r;
	}
	return NULL;
}

static int get_certificate(FlHttpReq *req)
{
	const char *id = fl_http_param(req, "id");
	pthread_mutex_lock(&acc.lock);
	struct json_object *r = find_record(id);
	struct json_object *v = r ? record_view(r, (int64_t)time(NULL)) : NULL;
	pthread_mutex_unlock(&acc.lock);
	if (!v)
		return fl_http_fail(req, -ENOENT, "no certificate %s", id);
	_cleanup_(json_object_putp) struct json_object *out = json_object_new_object();
	json_object_object_add(out, "certificate", v);
	return fl_http_send_json(req, 200, out);
}
FL_ROUTE(get_certificate, "GET", "/v1/access/certificate/{id}", FL_ROLE_AGENT);

static int delete_certificate(FlHttpReq *req)
{
	const char *id = fl_http_param(req, "id");
	int64_t now = (int64_t)time(NULL);
	int r = 0;
	char sandbox_id[64] = "";
	pthread_mutex_lock(&acc.lock);
	struct json_object *rec = find_record(id), *v = NULL;
	if (rec && !jint(rec, "revoked_at")) {
		json_object_object_add(rec, "revoked_at", json_object_new_int64(now));
		r = save_records();
		if (r < 0)
			json_object_object_add(rec, "revoked_at", NULL);
		snprintf(sandbox_id, sizeof(sandbox_id), "%s", jstr(rec, "sandbox_id") ?: "");
	}
	if (rec && r == 0)
		v = record_view(rec, now);
	pthread_mutex_unlock(&acc.lock);
	if (!rec)
		return fl_http_fail(req, -ENOENT, "no certificate %s", id);
	if (r < 0)
		return fl_http_fail(req, r, "cannot record the revocation: %s", strerror(-r));
	if (sandbox_id[0]) {
		struct json_object *d = json_object_new_object();
		json_object_object_add(d, "certificate_id", json_object_new_string(id));
		r = audit(req, "access.revoke", sandbox_id, d);
		json_object_put(d);
		if (r < 0) {
			pthread_mutex_lock(&acc.lock);
			struct json_object *again = find_record(id);
			if (again) {
				json_object_object_add(again, "revoked_at", NULL);
				if (save_records() < 0)
					fl_log_warn("ssh access: cannot rewrite %s", acc.path);
			}
			pthread_mutex_unlock(&acc.lock);
			json_object_put(v);
			return r;
		}
	}
	if (sandbox_id[0]) {
		struct json_object *ev = json_object_new_object();
		json_object_object_add(ev, "certificate_id", json_object_new_string(id));
		fl_events_publish(sandbox_id, "access.revoked", ev);
		json_object_put(ev);
	}
	_cleanup_(json_object_putp) struct json_object *out = json_object_new_object();
	json_object_object_add(out, "certificate", v);
	return fl_http_send_json(req, 200, out);
}
FL_ROUTE(delete_certificate, "DELETE", "/v1/access/certificate/{id}", FL_ROLE_AGENT);

static int get_certificates(FlHttpReq *req)
{
	char sb[128], user[160], active[16];
	const char *fsb = fl_http_query(req, "sandbox_id", sb, sizeof(sb));
	const char *fuser = fl_http_query(req, "user_id", user, sizeof(user));
	const char *factive = fl_http_query(req, "active", active, sizeof(active));
	int want_active = -1;
	if (factive) {
		if (!strcmp(factive, "true"))
			want_active = 1;
		else if (!strcmp(factive, "false"))
			want_active = 0;
		else
			return fl_http_fail(req, -EINVAL, "active must be true or false");
	}
	int64_t now = (int64_t)time(NULL);
	_cleanup_(json_object_putp) struct json_object *list = json_object_new_array();
	pthread_mutex_lock(&acc.lock);
	size_t n = acc.records ? json_object_array_length(acc.records) : 0;
	for (size_t i = n; i-- > 0;) { /* newest first */
		struct json_object *r = json_object_array_get_idx(acc.records, i);
		const char *rs = jstr(r, "sandbox_id"), *ru = jstr(r, "user_id");
		if (fsb && (!rs || strcmp(rs, fsb)))
			continue;
		if (fuser && (!ru || strcmp(ru, fuser)))
			continue;
		bool is_active = !jint(r, "revoked_at") && now < jint(r, "valid_before");
		if (want_active >= 0 && is_active != (want_active == 1))
			continue;
		json_object_array_add(list, record_view(r, now));
	}
	pthread_mutex_unlock(&acc.lock);
	_cleanup_(json_object_putp) struct json_object *out = json_object_new_object();
	json_object_object_add(out, "total", json_object_new_int((int)json_object_array_length(list)));
	json_object_object_add(out, "certificates", json_object_get(list));
	return fl_http_send_json(req, 200, out);
}
FL_ROUTE(get_certificates, "GET", "/v1/access/certificates", FL_ROLE_AGENT);
