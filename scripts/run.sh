#!/bin/bash
# SPDX-License-Identifier: MIT
# The second half of `make run` (after deps and the build): builds the
# default guest image, starts a private PostgreSQL cluster when no database
# is configured, then runs `build/fluid serve` with the state dir ./.state
# and stops the private cluster again when fluid exits.
#
#   scripts/run.sh [fluid serve options...]
#
# Environment: FLUID_STATE_DIR (default <checkout>/.state), FLUID_CONFIG
# (a config file; default /etc/fluid/config.yaml when present, else
# STATE/run-config.yaml, written here, which serves webui-dist/ at /),
# FLUID_IMAGE_DIR (default <checkout>/build/images), FLUID_SKIP_IMAGES=1 to
# skip the image build, DATABASE_URL to use an existing server.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export FLUID_STATE_DIR=${FLUID_STATE_DIR:-$ROOT/.state}
export FLUID_IMAGE_DIR=${FLUID_IMAGE_DIR:-$ROOT/build/images}
FLUID=$ROOT/build/fluid
[ -x "$FLUID" ] || { echo "run: $FLUID is missing (run make first)" >&2; exit 1; }

cfg=()
[ -n "${FLUID_CONFIG:-}" ] && cfg=(--config "$FLUID_CONFIG")
# The web UI (docs/webui.md): with no configuration file, serve the
# checkout's webui-dist/ at / through a small generated one. A file of your
# own sets server.webui_dir itself.
if [ ${#cfg[@]} -eq 0 ] && [ ! -e /etc/fluid/config.yaml ]; then
	mkdir -p "$FLUID_STATE_DIR"
	printf 'server:\n  webui_dir: "%s"\n' "$ROOT/webui-dist" >"$FLUID_STATE_DIR/run-config.yaml"
	cfg=(--config "$FLUID_STATE_DIR/run-config.yaml")
fi
"$FLUID" config check "${cfg[@]}" >/dev/null

mkdir -p "$FLUID_STATE_DIR"

if [ "${FLUID_SKIP_IMAGES:-0}" != 1 ] && [ -x image-build/build-images ]; then
	image=$("$FLUID" config get images.default "${cfg[@]}")
	echo "run: building guest image $image (cached after the first time)" >&2
	./image-build/build-images --only "$image" ||
		{ echo "run: building the guest image $image failed (FLUID_SKIP_IMAGES=1 skips this step)" >&2; exit 1; }
fi

started_pg=0
if [ "$("$FLUID" config get database.configured "${cfg[@]}")" != true ]; then
	"$ROOT/scripts/pg.sh" start
	started_pg=1
	DATABASE_URL=$("$ROOT/scripts/pg.sh" url)
	export DATABASE_URL
fi

# fluid runs as a child (not exec) so that the private cluster can be
# stopped after it: SIGTERM/SIGINT/SIGHUP are forwarded, then we wait.
"$FLUID" serve "${cfg[@]}" "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM INT HUP
set +e
wait "$pid"
rc=$?
while kill -0 "$pid" 2>/dev/null; do
	wait "$pid"
	rc=$?
done
set -e
trap - TERM INT HUP
if [ "$started_pg" = 1 ]; then
	"$ROOT/scripts/pg.sh" stop || true
fi
exit "$rc"
