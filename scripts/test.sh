#!/usr/bin/env bash
# Runs every StreamSpace test on a fresh Debian machine: installs and starts
# what the tests need (Docker engine, PostgreSQL, libvirt, Chromium, Node),
# builds the demo desktop, full desktop and web-app images, the demo VM disk
# and the web UI, then runs formatting and lint checks, the Rust
# unit/integration/end-to-end tests, the previous release against
# the new schema (scripts/test-upgrade.sh), the browser tests, schema
# checks of the Kubernetes objects, API fuzzing and a benchmark smoke test.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "dependencies"
scripts/install-deps.sh

# Compiled dependencies outlive the clone, so repeated runs are fast.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/streamspace-target}"
export STREAMSPACE_TEST_POSTGRES_URL="${STREAMSPACE_TEST_POSTGRES_URL:-postgres://streamspace:streamspace@127.0.0.1:5432/streamspace_test}"
# The libvirt tests skip where no libvirtd answers; here install-deps.sh
# started one, so a skip would hide a failure.
export STREAMSPACE_REQUIRE_LIBVIRT=1

# Each PostgreSQL test makes a throwaway database (crates/testkit/src/postgres.rs);
# those of earlier runs go now, or thousands of them fill the disk.
step "throwaway PostgreSQL databases of earlier runs"
psql "$STREAMSPACE_TEST_POSTGRES_URL" -X -q -tAc \
  "SELECT datname FROM pg_database WHERE datname LIKE 'ss\_test\_%'" |
  while read -r db; do
    psql "$STREAMSPACE_TEST_POSTGRES_URL" -X -q -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null
  done

# The interpreter install-deps.sh checked for jsonschema and yaml (Debian's
# packages): the test peers' venv below cannot see them.
python=$(command -v python3)

step "python test peers (vncdotool)"
venv=/var/tmp/streamspace-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check vncdotool
export PATH="$venv/bin:$PATH"

# shellcheck source=scripts/lib/demo-image.sh
source scripts/lib/demo-image.sh

step "demo desktop image"
demo_image desktop

# The web-app image the HTTP proxy's tests run.
step "demo web-app image (noVNC + websockify)"
demo_image webvnc

# The full desktop (IceWM, Firefox ESR; 487 MB): 42 s on a 2-core machine
# when built (its recipe changed), nothing while its recipe is unchanged. Its
# test and `up`'s template test run it; without the image the test would
# skip, so here a missing image fails it.
step "demo full desktop image (Firefox ESR)"
demo_image full-desktop
export STREAMSPACE_TEST_FULL_DESKTOP=1

# The pull tests push a bigger image made from the echo image to a
# private registry.
step "echo image (the pull tests' base)"
demo_image echo

# The libvirt agent's sessions boot this disk (docs/VM.md); its tests find
# it through STREAMSPACE_VM_IMAGE.
step "demo VM image"
vm_image

step "web UI"
scripts/build-ui.sh

step "format and lint"
"$python" tests/docs/modules.py
"$python" catalog/check.py
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "rust tests (unit, API on SQLite and PostgreSQL, end to end on Docker)"
cargo test --workspace --locked

step "old binary against the new schema: the previous release beside this one (docs/UPGRADING.md)"
scripts/test-upgrade.sh

step "browser tests (Chromium)"
scripts/test-ui.sh "$CARGO_TARGET_DIR/debug/streamspace"

step "kubernetes objects against the API schemas"
scripts/test-kubernetes.sh "$CARGO_TARGET_DIR/debug/streamspace"

step "API fuzzing against its own OpenAPI document (schemathesis)"
scripts/test-api-fuzz.sh "$CARGO_TARGET_DIR/debug/streamspace"

step "benchmarks, small and untimed (smoke test)"
scripts/bench.sh --quick

step "all tests passed"
