#!/bin/bash
# SPDX-License-Identifier: MIT
# Tap networking on a libvirt NAT network (docs/engine.md "Networking"):
# `fluid provision network` defines the network through a real libvirtd
# (started here when none runs) and is idempotent; sandboxes with network
# "tap" get their own MAC and a lease from libvirt's DHCP server, reach the
# gateway but not each other (isolated bridge ports), keep their address
# across a snapshot restore, and leave no tap device behind when destroyed.
# Without network.bridge in the configuration, "tap" is refused with 400.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
FLUID=$ROOT/build/fluid
[ -x "$FLUID" ] || { echo "build/fluid missing"; exit 1; }
[ -f build/images/tiny/image.json ] || { echo "build/images/tiny missing"; exit 1; }

T=$(mktemp -d /tmp/fluid-tap-XXXXXX)
NET=fltest$$
BR=fltbr$(($$ % 100000))
SUB=10.213.$((100 + $$ % 100))
spid= started_libvirtd=
cleanup() {
	[ -n "$spid" ] && { kill -TERM "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; }
	for p in $(pgrep -f "qemu-system.*$T/state" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	[ -f "$T/config.yaml" ] && "$FLUID" provision network --remove --config "$T/config.yaml" >/dev/null 2>&1
	[ -n "$started_libvirtd" ] && kill "$started_libvirtd" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
unset FLUID_STATE_DIR FLUID_ACCEL FLUID_LISTEN FLUID_URL FLUID_TOKEN FLUID_TOKEN_FILE DATABASE_URL FLUID_IMAGE_DIR

pass=0 fail=0
ok() { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }

if [ ! -S /run/libvirt/libvirt-sock ]; then
	libvirtd --daemon --pid-file "$T/libvirtd.pid" >/dev/null 2>&1
	for ((i = 0; i < 100; i++)); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.1; done
	started_libvirtd=$(cat "$T/libvirtd.pid" 2>/dev/null)
fi
[ -S /run/libvirt/libvirt-sock ] || { bad "libvirtd running"; echo "0 passed, 1 failed"; exit 1; }

write_config() { # $1 = bridge line (or empty)
	cat >"$T/config.yaml" <<EOF
server:
  listen: 127.0.0.1:0
state_dir: $T/state
accelerator: tcg
images:
  dir: $ROOT/build/images
  default: tiny
  pool_size: 0
network:
  name: $NET
  subnet: $SUB.0/24
$1
EOF
}
write_config "  bridge: $BR"

check "provision network defines and starts it" sh -c "'$FLUID' provision network --config '$T/config.yaml' >/dev/null"
check "the bridge exists with the gateway address" sh -c "ip -4 addr show dev $BR | grep -q 'inet $SUB.1/24'"
check "provisioning again is a no-op" sh -c "'$FLUID' provision network --config '$T/config.yaml' >/dev/null"
write_config "  bridge: ${BR}x"
if "$FLUID" provision network --config "$T/config.yaml" >"$T/out" 2>&1; then
	bad "an existing network with another bridge is refused"
else
	check "an existing network with another bridge is refused" grep -q "exists with bridge $BR" "$T/out"
fi
write_config "  bridge: $BR"

start_server() {
	rm -f "$T/state/serve.json"
	"$FLUID" serve --config "$T/config.yaml" >>"$T/serve.log" 2>&1 &
	spid=$!
	for ((i = 0; i < 600; i++)); do [ -s "$T/state/serve.json" ] && break; sleep 0.1; done
	URL=$(json 'd["url"]' <"$T/state/serve.json")
}
stop_server() { kill -TERM "$spid"; wait "$spid" 2>/dev/null; spid=; }
req() {
	local args=(-sS -o "$T/resp" -w '%{http_code}' -X "$1" "$URL$2")
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
	code=$(curl "${args[@]}")
	body=$(cat "$T/resp")
}
run() { # $1 sandbox, $2 command -> $out (stdout), $rc
	req POST "/v1/sandboxes/$1/run" "$(python3 -c 'import json,sys; print(json.dumps({"command": sys.argv[1]}))' "$2")"
	out=$(echo "$body" | json 'd["command"]["stdout"]')
	rc=$(echo "$body" | json 'd["command"]["exit_code"]')
}

start_server
req POST /v1/sandboxes '{"base_image":"tiny","network":"tap"}'
check "create a tap sandbox (201)" [ "$code" = 201 ]
A=$(echo "$body" | json 'd["sandbox"]["id"]') AIP=$(echo "$body" | json 'd["sandbox"]["ip_address"]')
req POST /v1/sandboxes '{"base_image":"tiny","network":"tap"}'
B=$(echo "$body" | json 'd["sandbox"]["id"]') BIP=$(echo "$body" | json 'd["sandbox"]["ip_address"]')
check "both got a lease in $SUB.0/24 ($AIP, $BIP)" sh -c "case '$AIP $BIP' in $SUB.*' '$SUB.*) true;; *) false;; esac"
check "the leases differ (own MACs)" [ "$AIP" != "$BIP" ]
req GET "/v1/sandboxes/$A/ip"
check "GET ip: the lease, reachable from the host" \
	[ "$(echo "$body" | json 'd["ip_address"], d["reachable_from_host"]')" = "('$AIP', True)" ]
run "$A" "ping -c 1 -W 3 $SUB.1 >/dev/null && echo gw"
check "a sandbox reaches the gateway" [ "$out" = gw ]
run "$A" "ping -c 1 -W 2 $BIP"
check "a sandbox cannot reach another one (isolated ports)" [ "$rc" != 0 ]
check "two isolated tap ports on the bridge" \
	[ "$(for d in /sys/class/net/$BR/brif/*; do cat "$d/isolated"; done | grep -c 1)" = 2 ]

req POST "/v1/sandboxes/$A/snapshots" '{"name":"s1"}'
req POST "/v1/sandboxes/$A/snapshots/s1/restore" '{}'
check "restore (200)" [ "$code" = 200 ]
req GET "/v1/sandboxes/$A"
check "the address survives a restore" [ "$(echo "$body" | json 'd["sandbox"]["ip_address"]')" = "$AIP" ]
run "$A" "ping -c 1 -W 3 $SUB.1 >/dev/null && echo gw"
check "and the network works after it" [ "$out" = gw ]

req DELETE "/v1/sandboxes/$A"
req DELETE "/v1/sandboxes/$B"
check "destroy leaves no tap device on the bridge" [ -z "$(ls /sys/class/net/$BR/brif/)" ]
stop_server

write_config ""
start_server
req POST /v1/sandboxes '{"base_image":"tiny","network":"tap"}'
check "without network.bridge, tap is refused (400)" [ "$code" = 400 ]
stop_server

check "provision --remove takes the network away" \
	sh -c "'$FLUID' provision network --remove --config '$T/config.yaml' >/dev/null && ! ip link show $BR >/dev/null 2>&1"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
