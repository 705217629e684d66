#!/usr/bin/env bash
# Runs StreamSpace on this Debian machine: installs Docker if needed, builds
# the web UI and a release binary, and starts `streamspace up` (control plane,
# embedded Docker agent, SQLite, demo desktops). Extra arguments go to `up`,
# e.g. scripts/run.sh --listen 0.0.0.0:8080
set -euo pipefail
cd "$(dirname "$0")/.."

STREAMSPACE_SKIP_POSTGRES=1 STREAMSPACE_SKIP_CHROMIUM=1 scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/streamspace-target}"
scripts/build-ui.sh
cargo build --release --locked -p streamspace-cli
bin="$CARGO_TARGET_DIR/release/streamspace"

# The demo images `up` offers as templates (Desktop, Web desktop, Desktop
# with Firefox), built from Debian packages once, and again when this
# version's recipe differs (the label crates/cli/src/image.rs writes).
for image in desktop webvnc full-desktop; do
  tag="streamspace/$image:local"
  recipe=$(cat images/lib/debian-rootfs.sh "images/$image/build.sh" | sha256sum | cut -c1-16)
  if [[ $(docker image inspect -f '{{index .Config.Labels "io.streamspace.recipe"}}' "$tag" 2>/dev/null) == "$recipe" ]]; then
    echo "==> image $tag: present"
    continue
  fi
  case "$image" in
    full-desktop) note="the longest: Firefox ESR is large, about a minute and 490 MB" ;;
    webvnc) note="about 30 s" ;;
    *) note="about 10 s" ;;
  esac
  echo "==> building image $tag ($note)"
  "$bin" build-image "$image"
done
exec "$bin" up "$@"
