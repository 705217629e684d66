#!/usr/bin/env bash
# Runs StreamSpace's benchmarks (crates/bench) on this machine: the real
# streamspace binary on the real Docker engine (and libvirt, for `vm`), side by
# side with websockify 0.13, raw TCP, the docker CLI and virsh, and writes
# bench-results.json.
#
# Usage: scripts/bench.sh [--quick] [BENCHMARK] [streamspace-bench options]
#   scripts/bench.sh                 every benchmark, full size (about 15 min)
#   scripts/bench.sh --quick         every benchmark, small and fast, no targets
#                                    judged: CI's smoke test, so it uses the
#                                    debug build the tests already made
#   scripts/bench.sh tunnel-latency  one benchmark (see streamspace-bench --help)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

BENCHES=(all tunnel-throughput tunnel-tls-throughput tunnel-latency tunnel-memory session-start warm-start hibernate-wake hub hub-replicas desktops audio-latency recording replicas vm)
ARGS=("$@")
named=0
profile=release
json=bench-results.json
for arg in "$@"; do
  # A smoke run's figures mean nothing; keep them apart from the real ones.
  [[ $arg == --quick ]] && profile=debug && json=test-artifacts/bench-quick.json
  for bench in "${BENCHES[@]}"; do [[ $arg == "$bench" ]] && named=1; done
done
((named)) || ARGS+=(all)

# Only the replica benchmarks (alone or in `all`) need PostgreSQL.
postgres=0
for arg in "${ARGS[@]}"; do [[ $arg == all || $arg == replicas || $arg == hub-replicas ]] && postgres=1; done
step "dependencies (Docker engine$( ((postgres)) && echo ', PostgreSQL'))"
if ((postgres)); then
  STREAMSPACE_SKIP_CHROMIUM=1 scripts/install-deps.sh
else
  STREAMSPACE_SKIP_POSTGRES=1 STREAMSPACE_SKIP_CHROMIUM=1 scripts/install-deps.sh
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/streamspace-target}"

step "websockify 0.13 (PyPI), the peer to beat"
venv=/var/tmp/streamspace-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'websockify==0.13.*'

step "session images"
# shellcheck source=scripts/lib/demo-image.sh
source scripts/lib/demo-image.sh
demo_image desktop
demo_image echo
vm_image

step "$profile build"
if [[ $profile == release ]]; then
  cargo build --release --locked -p streamspace-cli -p streamspace-bench
else
  cargo build --locked -p streamspace-cli -p streamspace-bench
fi

# 10,000 simulated agents need 10,000 sockets in this process and in the
# control plane.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

step "benchmarks: ${ARGS[*]} (open files: $(ulimit -n), load: $(cut -d' ' -f1-3 /proc/loadavg))"
mkdir -p "$(dirname "$json")"
"$CARGO_TARGET_DIR/$profile/streamspace-bench" \
  --bin "$CARGO_TARGET_DIR/$profile/streamspace" \
  --websockify "$venv/bin/websockify" \
  --json "$json" \
  "${ARGS[@]}"
step "results in $json"
