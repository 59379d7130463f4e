#!/bin/bash
# SPDX-License-Identifier: MIT
# Integration test of SSH access certificates (/v1/access/*) against a real
# `fluid serve`:
#  - GET /v1/access/ca-pubkey is the key under STATE/ssh/ca, with the
#    fingerprint ssh-keygen computes;
#  - POST /v1/access/request returns an OpenSSH user certificate that
#    `ssh-keygen -L` reads with principal root, the requested TTL, the key id
#    naming certificate, sandbox and user, and fluid's CA as signer;
#  - bad requests get 400 (ttl 0/11, wrong types, unknown fields, bad keys,
#    bad user ids) and unknown sandboxes 404, with the error shape, and
#    record nothing;
#  - records: get, list with filters, revoke (DELETE), 404s, and both the CA
#    and the records survive a restart;
#  - the grant is pushed on the sandbox's WebSocket stream;
#  - with the tiny image, a real sandbox's grant names its SSH port forward
#    in the connect command;
#  - with token auth and PostgreSQL (when initdb exists): 401 without a
#    token, and grants and revocations are rows of the audit log;
#  - with the debian-12 image (skipped when absent or FLUID_TEST_ACCESS_SSH=0;
#    its first sandbox builds a template, ~1-2 min under TCG): a real
#    `ssh` login as root with the key and the certificate succeeds, the same
#    key without the certificate is refused.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
FLUID=$ROOT/build/fluid
WS="python3 $ROOT/tests/integration/test-stream-ws.py"
IMAGES=${FLUID_IMAGE_DIR:-$ROOT/build/images}
[ -x "$FLUID" ] || { echo "build/fluid missing"; exit 1; }

T=$(mktemp -d)
chmod 0755 "$T" # the private PostgreSQL cluster's owner must reach it
spid=
DB=
stop_server() { [ -n "$spid" ] && kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null; spid=; }
cleanup() {
	stop_server
	[ -n "$DB" ] && FLUID_STATE_DIR=$T/auth "$ROOT/scripts/pg.sh" stop >/dev/null 2>&1
	for p in $(pgrep -f "qemu-system.*$T/" 2>/dev/null); do kill "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
unset FLUID_STATE_DIR FLUID_ACCEL FLUID_LISTEN FLUID_URL FLUID_TOKEN DATABASE_URL

pass=0 fail=0
ok() { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }
jtrue() { python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if eval(sys.argv[1], {"d": d}) else 1)' "$1"; }

cat >"$T/config.yaml" <<EOF
server:
  listen: 127.0.0.1:0
state_dir: $T/state
accelerator: tcg
images:
  dir: $IMAGES
  default: tiny
  pool_size: 0
EOF
start_server() {
	rm -f "$T/state/serve.json"
	FLUID_TEST_EVENTS=1 "$FLUID" serve --config "$T/config.yaml" >>"$T/serve.log" 2>&1 &
	spid=$!
	for ((i = 0; i < 600; i++)); do [ -s "$T/state/serve.json" ] && break; sleep 0.1; done
	[ -s "$T/state/serve.json" ] || { bad "server started"; tail -20 "$T/serve.log"; exit 1; }
	URL=$(json 'd["url"]' <"$T/state/serve.json")
	WSURL=ws://${URL#http://}
}
start_server
ok "server started at $URL"

# request BODY: POST /v1/access/request, body in $T/out, status echoed.
request() { curl -sS -o "$T/out" -w '%{http_code}' -X POST "$URL/v1/access/request" -d "$1"; }
mkreq() { # sandbox user key ttl
	python3 -c 'import json,sys; print(json.dumps({"sandbox_id":sys.argv[1],"user_id":sys.argv[2],"public_key":sys.argv[3],"ttl_minutes":int(sys.argv[4])}))' "$@"
}

# 1. The CA public key.
curl -sS "$URL/v1/access/ca-pubkey" >"$T/ca.json"
capub=$(json 'd["public_key"]' <"$T/ca.json")
check "ca-pubkey is STATE/ssh/ca/ca_key.pub" test "$capub" = "$(cat "$T/state/ssh/ca/ca_key.pub")"
check "ca-pubkey fingerprint matches ssh-keygen -l" \
	grep -qF "$(json 'd["fingerprint"]' <"$T/ca.json")" <<<"$(ssh-keygen -l -f "$T/state/ssh/ca/ca_key.pub")"
check "CA private key is 0600" test "$(stat -c %a "$T/state/ssh/ca/ca_key")" = 600

# 2. A certificate for a VM-less test sandbox, read back by ssh-keygen.
ssh-keygen -q -t ed25519 -N '' -C alice@laptop -f "$T/alice"
pub=$(cat "$T/alice.pub")
$WS "$WSURL/v1/sandboxes/test-sb1/stream" --expect-type access.granted --timeout 10 >"$T/ws.out" 2>&1 &
wpid=$!
for ((i = 0; i < 200; i++)); do grep -q stream.open "$T/ws.out" 2>/dev/null && break; sleep 0.1; done
before=$(date +%s)
code=$(request "$(mkreq test-sb1 alice "$pub" 5)")
after=$(date +%s)
check "POST /v1/access/request -> 201 ($code)" test "$code" = 201
cp "$T/out" "$T/grant.json"
CID=$(json 'd["certificate_id"]' <"$T/grant.json")
json 'd["certificate"]' <"$T/grant.json" >"$T/alice-cert.pub"
TZ=UTC ssh-keygen -L -f "$T/alice-cert.pub" >"$T/L.out" 2>&1
check "ssh-keygen -L: a user certificate for the ed25519 key" grep -q 'Type: ssh-ed25519-cert-v01@openssh.com user certificate' "$T/L.out"
check "ssh-keygen -L: key id names certificate, sandbox and user" grep -qF "Key ID: \"fluid:$CID:test-sb1:alice\"" "$T/L.out"
check "ssh-keygen -L: principal root only" \
	python3 -c 'import sys,re; t=open(sys.argv[1]).read(); m=re.search(r"Principals: \n((?:\s{16}\S+\n)+)", t); sys.exit(0 if m and m.group(1).split()==["root"] else 1)' "$T/L.out"
check "ssh-keygen -L: signed by fluid's CA" grep -qF "Signing CA: ED25519 $(json 'd["fingerprint"]' <"$T/ca.json")" "$T/L.out"
check "ssh-keygen -L: certifies the requested key" grep -qF "$(ssh-keygen -l -f "$T/alice.pub" | awk '{print $2}')" "$T/L.out"
python3 - "$T/L.out" "$before" "$after" >"$T/valid.check" <<'EOF'
import re, sys, datetime
t = open(sys.argv[1]).read()
m = re.search(r"Valid: from (\S+) to (\S+)", t)
f = lambda s: int(datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc).timestamp())
a, b = f(m.group(1)), f(m.group(2))
before, after = int(sys.argv[2]), int(sys.argv[3])
assert before - 31 <= a <= after - 29, (a, before, after)   # 30 s clock-skew allowance
assert before + 300 <= b <= after + 300, (b, before, after)  # ttl_minutes 5
print("ok", m.group(0))
EOF
check "validity window is now-30s .. now+5min: $(cat "$T/valid.check")" grep -q '^ok' "$T/valid.check"
check "grant has the CA key, principals, no port for a VM-less sandbox" jtrue \
	"d['ca_public_key'] == '$capub' and d['principals'] == ['root'] and d['ssh_port'] is None and d['connect_command'] is None and d['note']" <"$T/grant.json"
wait $wpid
check "the grant is pushed on the sandbox's stream" grep -q "\"type\":\"access.granted\".*\"certificate_id\":\"$CID\"" "$T/ws.out"

# 3. Bad requests: exact status, error shape, nothing recorded.
n_before=$(curl -sS "$URL/v1/access/certificates" | json 'd["total"]')
bad_table=(
	"400|$(mkreq test-sb1 alice "$pub" 0)"
	"400|$(mkreq test-sb1 alice "$pub" 11)"
	"400|{\"sandbox_id\":\"test-sb1\",\"user_id\":\"alice\",\"public_key\":\"$pub\",\"ttl_minutes\":\"5\"}"
	"400|{\"sandbox_id\":\"test-sb1\",\"user_id\":\"alice\",\"public_key\":\"$pub\",\"ttl_minutes\":5,\"principal\":\"x\"}"
	"400|{\"sandbox_id\":\"test-sb1\",\"user_id\":\"alice\",\"ttl_minutes\":5}"
	"400|$(mkreq test-sb1 alice 'ssh-ed25519 AAAAnotakey' 5)"
	"400|$(mkreq test-sb1 alice "$(cat "$T/alice-cert.pub")" 5)"
	"400|$(mkreq test-sb1 'alice smith' "$pub" 5)"
	"400|$(mkreq test-sb1 '../../etc' "$pub" 5)"
	"400|not json"
	"400|[1,2]"
	"404|$(mkreq no-such-sandbox alice "$pub" 5)"
)
for row in "${bad_table[@]}"; do
	want=${row%%|*} body=${row#*|}
	code=$(request "$body")
	if [ "$code" = "$want" ] && jtrue "d['code'] == $want and isinstance(d['error'], str) and 'details' in d" <"$T/out"; then
		ok "bad request -> $want: $(head -c 60 <<<"$body")... ($(json 'd["error"]' <"$T/out"))"
	else
		bad "bad request -> $code (want $want): $(head -c 80 <<<"$body") $(cat "$T/out")"
	fi
done
check "bad requests recorded nothing" test "$(curl -sS "$URL/v1/access/certificates" | json 'd["total"]')" = "$n_before"

# 4. Records: get, list, filters, revoke.
ssh-keygen -q -t ecdsa -b 256 -N '' -f "$T/bob"
code=$(request "$(mkreq test-sb2 bob "$(cat "$T/bob.pub")" 1)")
check "an ECDSA key gets a certificate too ($code)" test "$code" = 201
BID=$(json 'd["certificate_id"]' <"$T/out")
curl -sS "$URL/v1/access/certificate/$CID" >"$T/get.json"
check "GET certificate/{id}: active, the grant's window" jtrue \
	"d['certificate']['id'] == '$CID' and d['certificate']['status'] == 'active' and d['certificate']['sandbox_id'] == 'test-sb1' and d['certificate']['user_id'] == 'alice' and d['certificate']['valid_before'] == $(json 'repr(d["valid_before"])' <"$T/grant.json")" <"$T/get.json"
check "list: both, newest first" jtrue "d['total'] == 2 and [c['id'] for c in d['certificates']] == ['$BID', '$CID']" \
	< <(curl -sS "$URL/v1/access/certificates")
check "list ?sandbox_id= filters" jtrue "d['total'] == 1 and d['certificates'][0]['id'] == '$BID'" \
	< <(curl -sS "$URL/v1/access/certificates?sandbox_id=test-sb2")
check "list ?user_id= filters" jtrue "d['total'] == 1 and d['certificates'][0]['id'] == '$CID'" \
	< <(curl -sS "$URL/v1/access/certificates?user_id=alice")
code=$(curl -sS -o "$T/out" -w '%{http_code}' "$URL/v1/access/certificates?active=maybe")
check "list ?active=maybe -> 400" test "$code" = 400
code=$(curl -sS -o "$T/out" -w '%{http_code}' -X DELETE "$URL/v1/access/certificate/$CID")
check "DELETE certificate/{id} -> 200 revoked" jtrue "d['certificate']['status'] == 'revoked' and d['certificate']['revoked_at']" <"$T/out"
check "list ?active=true leaves the revoked one out" jtrue "d['total'] == 1 and d['certificates'][0]['id'] == '$BID'" \
	< <(curl -sS "$URL/v1/access/certificates?active=true")
for m in GET DELETE; do
	code=$(curl -sS -o "$T/out" -w '%{http_code}' -X $m "$URL/v1/access/certificate/cert-nope")
	check "$m unknown certificate -> 404 with the error shape" jtrue "d['code'] == 404" <"$T/out"
done

# 5. Restart: same CA, records kept.
stop_server
start_server
check "after a restart the CA is the same" test "$(curl -sS "$URL/v1/access/ca-pubkey" | json 'd["public_key"]')" = "$capub"
check "after a restart the records and the revocation are kept" jtrue \
	"d['total'] == 2 and {c['id']: c['status'] for c in d['certificates']} == {'$CID': 'revoked', '$BID': 'active'}" \
	< <(curl -sS "$URL/v1/access/certificates")

# 6. A real sandbox: the connect command names its SSH port forward.
if [ ! -f "$IMAGES/tiny/image.json" ]; then
	echo "skip - no tiny image under $IMAGES (make images): SSH port not checked"
else
	code=$(curl -sS -m 600 -o "$T/create.out" -w '%{http_code}' -X POST "$URL/v1/sandboxes" \
		-d '{"base_image":"tiny","agent_id":"test-access"}')
	SB=$(json 'd["sandbox"]["id"]' <"$T/create.out" 2>/dev/null)
	if [ "$code" != 201 ] || [ -z "$SB" ]; then
		bad "create a tiny sandbox: $code $(head -c 300 "$T/create.out")"
	else
		code=$(request "$(mkreq "$SB" alice "$pub" 2)")
		port=$(json 'd["ssh_port"]' <"$T/out")
		check "grant for a running sandbox -> 201 with its SSH port ($code, port $port)" \
			jtrue "isinstance(d['ssh_port'], int) and d['ssh_port'] > 0 and d['connect_command'].endswith('-p %d root@127.0.0.1' % d['ssh_port'])" <"$T/out"
		check "the port is the sandbox's QEMU hostfwd to :22" \
			grep -q "hostfwd=tcp:127.0.0.1:$port-:22" <(pgrep -af "qemu-system.*$T/")
		curl -sS -m 60 -o /dev/null -X DELETE "$URL/v1/sandboxes/$SB"
		code=$(request "$(mkreq "$SB" alice "$pub" 2)")
		check "a destroyed sandbox gets no certificate ($code)" test "$code" = 404
	fi
fi

# 6b. With PostgreSQL and token auth: grants and revocations are audited.
if [ "${FLUID_TEST_ACCESS_DB:-1}" = 0 ] || ! { command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }; then
	echo "skip - no PostgreSQL here: audit of grants not checked"
else
	stop_server
	if FLUID_STATE_DIR=$T/auth "$ROOT/scripts/pg.sh" start >"$T/pg.log" 2>&1; then
		DB=$(FLUID_STATE_DIR=$T/auth "$ROOT/scripts/pg.sh" url)
		sed "s|state_dir: .*|state_dir: $T/auth|" "$T/config.yaml" >"$T/auth.yaml"
		DATABASE_URL=$DB FLUID_TEST_EVENTS=1 "$FLUID" serve --config "$T/auth.yaml" >>"$T/serve.log" 2>&1 &
		spid=$!
		for ((i = 0; i < 600; i++)); do [ -s "$T/auth/serve.json" ] && break; sleep 0.1; done
		URL=$(json 'd["url"]' <"$T/auth/serve.json")
		TOKEN=$(cat "$T/auth/admin.token" 2>/dev/null)
		code=$(request "$(mkreq test-sb9 alice "$pub" 2)")
		check "no token -> 401 ($code)" test "$code" = 401
		code=$(curl -sS -o "$T/out" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
			-X POST "$URL/v1/access/request" -d "$(mkreq test-sb9 alice "$pub" 2)")
		check "with a token -> 201 ($code)" test "$code" = 201
		GID=$(json 'd["certificate_id"]' <"$T/out")
		code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
			-X DELETE "$URL/v1/access/certificate/$GID")
		check "revoke with a token -> 200 ($code)" test "$code" = 200
		curl -sS -H "Authorization: Bearer $TOKEN" "$URL/v1/audit?sandbox_id=test-sb9" >"$T/audit.json"
		check "the audit log has the grant (with the certificate id) and the revocation" python3 - "$T/audit.json" "$GID" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
rows = next(v for v in d.values() if isinstance(v, list))
acts = {r.get("action"): r for r in rows}
g, v = acts.get("access.grant"), acts.get("access.revoke")
assert g and v, [r.get("action") for r in rows]
assert sys.argv[2] in json.dumps(g) and sys.argv[2] in json.dumps(v)
EOF
		code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$URL/v1/audit/verify")
		check "the audit chain verifies ($code)" test "$code" = 200
		n=$(curl -sS -H "Authorization: Bearer $TOKEN" "$URL/v1/access/certificates" | json 'd["total"]')
		FLUID_STATE_DIR=$T/auth "$ROOT/scripts/pg.sh" stop >/dev/null 2>&1
		code=$(curl -sS -m 60 -o "$T/out" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
			-X POST "$URL/v1/access/request" -d "$(mkreq test-sb9 alice "$pub" 2)")
		check "PostgreSQL down: a grant gets 503 and no certificate ($code)" \
			jtrue "d['code'] == 503 and 'certificate' not in d" <"$T/out"
		check "  and nothing was recorded" \
			test "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$T/auth/ssh/certificates.json")" = "$n"
		stop_server
		start_server
	else
		bad "private PostgreSQL cluster started"; tail -5 "$T/pg.log"
	fi
fi

# 7. A real SSH login into a debian-12 sandbox with the certificate.
if [ "${FLUID_TEST_ACCESS_SSH:-1}" = 0 ] || [ ! -f "$IMAGES/debian-12/image.json" ]; then
	echo "skip - no debian-12 image under $IMAGES (or FLUID_TEST_ACCESS_SSH=0): SSH login not checked"
else
	code=$(curl -sS -m 900 -o "$T/create.out" -w '%{http_code}' -X POST "$URL/v1/sandboxes" \
		-d '{"base_image":"debian-12","agent_id":"test-access"}')
	SB=$(json 'd["sandbox"]["id"]' <"$T/create.out" 2>/dev/null)
	if [ "$code" != 201 ] || [ -z "$SB" ]; then
		bad "create a debian-12 sandbox: $code $(head -c 300 "$T/create.out")"
	else
		code=$(request "$(mkreq "$SB" alice "$pub" 3)")
		check "grant on a running debian-12 sandbox installs the CA in the guest ($code $(json "d.get('guest_trust_error', '')" <"$T/out"))" \
			jtrue "d['guest_trust'] == 'installed' and d['ssh_port'] > 0" <"$T/out"
		port=$(json 'd["ssh_port"]' <"$T/out")
		mkdir -p "$T/login"
		cp "$T/alice" "$T/login/id"
		json 'd["certificate"]' <"$T/out" >"$T/login/id-cert.pub"
		SSHO=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes
		      -o ConnectTimeout=60 -o IdentitiesOnly=yes -o LogLevel=ERROR -p "$port")
		out=$(ssh -i "$T/login/id" -o CertificateFile="$T/login/id-cert.pub" "${SSHO[@]}" root@127.0.0.1 'id -un; hostname' 2>&1)
		grep -q '^root$' <<<"$out" && ok "the connect command works right after the grant" ||
			bad "the connect command works right after the grant: $(tr '\n' ' ' <<<"$out")"
		for ((i = 0; i < 5; i++)); do # a freshly cloned guest may still be bringing sshd up
			grep -q '^root$' <<<"$out" && break
			sleep 5
			out=$(ssh -i "$T/login/id" -o CertificateFile="$T/login/id-cert.pub" "${SSHO[@]}" root@127.0.0.1 'id -un; hostname' 2>&1)
		done
		check "ssh root@127.0.0.1 -p $port with the certificate logs in ($(tr '\n' ' ' <<<"$out"))" \
			test "$(head -1 <<<"$out")" = root
		rm "$T/login/id-cert.pub"
		ssh -i "$T/login/id" "${SSHO[@]}" root@127.0.0.1 true >"$T/ssh-nocert.out" 2>&1
		check "the same key without the certificate is refused" test $? -ne 0
		curl -sS -m 60 -o /dev/null -X DELETE "$URL/v1/sandboxes/$SB"
	fi
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
