#!/usr/bin/env bash
# The old-binary test (docs/UPGRADING.md): builds the previous release (the
# commit in tests/upgrade/previous-release) from a git worktree into the same
# CARGO_TARGET_DIR, so the compiled dependencies are shared and only our own
# crates are compiled again, then runs the end-to-end test that puts an old
# and a new replica (and an old Docker agent) on one PostgreSQL database the
# new binary migrated (crates/cli/tests/e2e/upgrade.rs).
#
# Usage: scripts/test-upgrade.sh   (scripts/test.sh runs it; needs the git
# history of the previous release, Docker, PostgreSQL and the demo desktop
# image, as the other end-to-end tests do)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/streamspace-target}"
previous=$(grep -v '^#' tests/upgrade/previous-release | head -n 1 | tr -d '[:space:]')
git cat-file -e "$previous^{commit}" 2>/dev/null || {
  echo "the previous release $previous is not in this clone's history: fetch it (git fetch --unshallow)" >&2
  exit 1
}

# The worktree lives beside the compiled code it shares and is made (and
# edited) only when the previous release changes: a fresh clone with a warm
# CARGO_TARGET_DIR reuses it as it is, so its sources keep their times and
# nothing of it is compiled again. (Its link back to a clone that is gone
# does not matter: nothing below runs git in it.)
src="$CARGO_TARGET_DIR/previous-release/src"
stamp="$CARGO_TARGET_DIR/previous-release/commit"
if [ "$(cat "$stamp" 2>/dev/null)" != "$previous" ] || [ ! -f "$src/Cargo.toml" ]; then
  rm -f "$stamp"
  git worktree remove --force "$src" 2>/dev/null || rm -rf "$src"
  git worktree prune
  mkdir -p "$(dirname "$src")"
  git worktree add --detach "$src" "$previous" >/dev/null
  # Two edits make its build live beside this one's in $CARGO_TARGET_DIR.
  # Cargo names the compiled code of workspace crates by name, version and
  # path within the workspace, so the previous release's crates would share
  # names with this one's and replace them (with fingerprints that still
  # look fresh): their version gets `-previous`, which also shows in what
  # the old replica and agent report. And its binary, built as
  # `streamspace`, would replace the new binary in $CARGO_TARGET_DIR/debug:
  # it is named `streamspace-previous`. Nothing else of the release changes.
  version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$src/Cargo.toml" | head -n 1)
  sed -i "0,/^version = \"$version\"\$/s//version = \"$version-previous\"/" "$src/Cargo.toml"
  sed -i "/^name = \"streamspace-/{n;s/^version = \"$version\"\$/version = \"$version-previous\"/}" \
    "$src/Cargo.lock"
  sed -i '/^\[\[bin\]\]/,/^name/ s/^name = "streamspace"$/name = "streamspace-previous"/' \
    "$src/crates/cli/Cargo.toml"
  grep -q '^name = "streamspace-previous"$' "$src/crates/cli/Cargo.toml" || {
    echo "cannot rename the previous release's binary in $src/crates/cli/Cargo.toml" >&2
    exit 1
  }
  echo "$previous" >"$stamp"
fi

echo "building the previous release ${previous:0:10} (dependencies shared with this build)" >&2
(cd "$src" && cargo build --locked -p streamspace-cli --bin streamspace-previous)
previous_bin="$CARGO_TARGET_DIR/debug/streamspace-previous"

echo "old and new replicas on one database" >&2
cd "$repo"
STREAMSPACE_PREVIOUS_BIN="$previous_bin" \
  cargo test --locked -p streamspace-cli --test e2e upgrade:: -- --ignored --nocapture
