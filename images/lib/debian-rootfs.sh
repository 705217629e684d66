# shellcheck shell=bash
# Building session images from Debian packages, without a registry.
#
# No container registry is reachable on our machines, so `docker pull` and
# FROM-based Dockerfiles are out. Instead apt resolves the package closure
# against an empty dpkg status (i.e. "as if nothing were installed"), we
# download and unpack those .debs into a directory and `docker import` it.
#
# Sourced by images/*/build.sh, which set IMAGE_NAME, PACKAGES and SKIP_RE
# first. Only functions are defined here: the Rust binary pipes this file and
# images/desktop/build.sh to `bash -s` as one script.

log() { printf '%s-image: %s\n' "$IMAGE_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Checks the tools, makes $WORK (removed on exit) and an empty $ROOTFS in it.
rootfs_prepare() {
  local tool
  for tool in apt-get dpkg-deb tar docker; do
    command -v "$tool" >/dev/null 2>&1 ||
      die "'$tool' not found; this needs a Debian/Ubuntu host with apt and docker (see scripts/install-deps.sh)"
  done
  docker info >/dev/null 2>&1 ||
    die "cannot talk to the Docker engine (is dockerd running, and may $(id -un) use it?)"
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/streamspace-$IMAGE_NAME.XXXXXX")"
  # Unpacked trees may contain read-only dirs; make them writable so rm succeeds.
  trap 'chmod -R u+w "$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT
  ROOTFS="$WORK/rootfs"
  mkdir -p "$WORK/debs" "$ROOTFS"
  : >"$WORK/empty-status"
}

# Downloads the closure of $PACKAGES, less what matches $SKIP_RE.
rootfs_fetch_debs() {
  local sandbox=()
  # As root apt drops to the _apt user, which cannot write into our 0700 temp dir.
  [[ $(id -u) -eq 0 ]] && sandbox=(-o APT::Sandbox::User=root)
  rm -f "$WORK"/debs/*.deb
  # An empty status file makes apt list every package the image needs,
  # including libc, instead of only what the host is missing.
  apt-get -s -q -o Dir::State::Status="$WORK/empty-status" \
    install --no-install-recommends "${PACKAGES[@]}" >"$WORK/plan" 2>"$WORK/apt.log" || return 1
  awk '/^Inst /{ v = $3; gsub(/[()]/, "", v); print $2 "=" v }' "$WORK/plan" >"$WORK/closure"
  local want
  mapfile -t want < <(awk -F= -v re="$SKIP_RE" '$1 !~ re' "$WORK/closure")
  ((${#want[@]})) || return 1
  log "downloading ${#want[@]} packages ($(wc -l <"$WORK/closure") in closure, rest skipped)"
  (cd "$WORK/debs" && apt-get download -q "${sandbox[@]}" "${want[@]}") >>"$WORK/apt.log" 2>&1
}

# Unpacks the packages into $ROOTFS, refreshing stale apt lists once if root.
rootfs_unpack() {
  log "resolving package closure"
  if ! rootfs_fetch_debs; then
    # Missing or outdated apt lists (fresh machine, or versions gone from the
    # mirror): refresh once if we are allowed to.
    [[ $(id -u) -eq 0 ]] ||
      die "apt could not resolve/download ${PACKAGES[*]} (try 'sudo apt-get update'): $(tail -n 5 "$WORK/apt.log")"
    log "apt lists look stale, running apt-get update"
    apt-get update -q >/dev/null || die "apt-get update failed"
    rootfs_fetch_debs || die "apt could not resolve/download ${PACKAGES[*]}: $(tail -n 5 "$WORK/apt.log")"
  fi
  log "unpacking into rootfs"
  local deb
  for deb in "$WORK"/debs/*.deb; do
    dpkg-deb --fsys-tarfile "$deb" |
      tar -x -p --no-same-owner -C "$ROOTFS" \
        --exclude='./usr/share/doc/*' --exclude='./usr/share/man/*' \
        --exclude='./usr/share/info/*' --exclude='./usr/share/lintian/*' \
        --exclude='./usr/share/locale/*'
  done
  # busybox (static, so runnable from the host) provides sh, sleep, ls...:
  # link every applet that no real package file already provides.
  local applet
  while IFS= read -r applet; do
    [[ -e "$ROOTFS/$applet" || -L "$ROOTFS/$applet" ]] && continue
    mkdir -p "$ROOTFS/$(dirname "$applet")"
    ln -s /bin/busybox "$ROOTFS/$applet"
  done < <("$ROOTFS/bin/busybox" --list-full)
}

# A linker cache speeds up start; it needs chroot, so only when root.
rootfs_ldconfig() {
  if [[ $(id -u) -eq 0 ]]; then
    ldconfig -r "$ROOTFS" 2>/dev/null || log "ldconfig failed (harmless: ld.so searches the multiarch dirs anyway)"
  fi
}

# Imports $WORK/rootfs.tar as TAG with the given `docker import` options, and
# drops the image it replaces unless a container still uses it.
rootfs_import() {
  local tag=$1
  shift
  log "importing as $tag"
  local old_id new_id
  old_id="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
  new_id="$(docker import "$@" "$WORK/rootfs.tar" "$tag")"
  if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
  fi
  log "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
}
