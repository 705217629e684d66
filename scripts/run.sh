#!/usr/bin/env bash
# Runs StreamSpace on this Debian machine: installs Docker if needed, builds
# the web UI and a release binary, and starts `streamspace up` (control plane,
# embedded Docker agent, SQLite, demo desktop). Extra arguments go to `up`,
# e.g. scripts/run.sh --listen 0.0.0.0:8080
set -euo pipefail
cd "$(dirname "$0")/.."

STREAMSPACE_SKIP_POSTGRES=1 STREAMSPACE_SKIP_CHROMIUM=1 scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/streamspace-target}"
scripts/build-ui.sh
cargo build --release --locked -p streamspace-cli
exec "$CARGO_TARGET_DIR/release/streamspace" up "$@"
