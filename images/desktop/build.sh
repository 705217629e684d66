#!/usr/bin/env bash
# Build the StreamSpace desktop session image from Debian packages.
#
# Usage: build.sh [TAG]            (default TAG: streamspace/desktop:local)
#        bash -s -- TAG < build.sh (how the Rust binary runs its embedded copy)
#
# No container registry is reachable on our machines, so `docker pull` and
# FROM-based Dockerfiles are out. Instead apt resolves the package closure
# against an empty dpkg status (i.e. "as if nothing were installed"), we
# download and unpack those .debs into a directory and `docker import` it.
# This file must stay self-contained: it is embedded with include_str! and
# piped to bash, so it cannot use its own path or sibling files.
set -euo pipefail

TAG="${1:-streamspace/desktop:local}"
PACKAGES=(tigervnc-standalone-server xterm x11-apps busybox-static libc-bin)
# Pulled in by the closure but not needed at runtime: Mesa/LLVM (Xvnc runs
# without a GL vendor library), perl, man/groff, and the packaging tools.
# Xvnc/xterm/x11-apps link none of these; dropping them saves ~290 MB.
SKIP_RE='^(libllvm[0-9]*|libz3-[0-9]*|libicu[0-9]*|libxml2|libgl1-mesa-dri|libglx-mesa0|libglapi-mesa|libdrm.*|libsensors.*|libelf1|libedit2|perl|perl-base|perl-modules-.*|libperl.*|lib.*-perl|libdb5\.3|libgdbm.*|man-db|groff-base|libuchardet0|libpipeline1|bsdextrautils|dpkg|tar|debconf|sysvinit-utils|lsb-base)$'
USER_NAME=user
USER_UID=1000
USER_HOME=/home/user

log() { printf 'desktop-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The body is one function so bash has read all of it before running
# anything: with `bash -s` the script arrives on stdin, and a command that
# reads stdin (given </dev/null below) could otherwise swallow the rest.
# (Not indented, to keep the heredocs below literal.)
main() {
for tool in apt-get dpkg-deb tar docker; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "'$tool' not found; this needs a Debian/Ubuntu host with apt and docker (see scripts/install-deps.sh)"
done
docker info >/dev/null 2>&1 ||
  die "cannot talk to the Docker engine (is dockerd running, and may $(id -un) use it?)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/streamspace-desktop.XXXXXX")"
# Unpacked trees may contain read-only dirs; make them writable so rm succeeds.
cleanup() { chmod -R u+w "$WORK" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
ROOTFS="$WORK/rootfs"
mkdir -p "$WORK/debs" "$ROOTFS"
: >"$WORK/empty-status"

# An empty status file makes apt list every package the image needs,
# including libc, instead of only what the host is missing.
SANDBOX=()
# As root apt drops to the _apt user, which cannot write into our 0700 temp dir.
[[ $(id -u) -eq 0 ]] && SANDBOX=(-o APT::Sandbox::User=root)
fetch_debs() {
  rm -f "$WORK"/debs/*.deb
  apt-get -s -q -o Dir::State::Status="$WORK/empty-status" \
    install --no-install-recommends "${PACKAGES[@]}" >"$WORK/plan" 2>"$WORK/apt.log" || return 1
  awk '/^Inst /{ v = $3; gsub(/[()]/, "", v); print $2 "=" v }' "$WORK/plan" >"$WORK/closure"
  mapfile -t WANT < <(awk -F= -v re="$SKIP_RE" '$1 !~ re' "$WORK/closure")
  ((${#WANT[@]})) || return 1
  log "downloading ${#WANT[@]} packages ($(wc -l <"$WORK/closure") in closure, rest skipped)"
  (cd "$WORK/debs" && apt-get download -q "${SANDBOX[@]}" "${WANT[@]}") >>"$WORK/apt.log" 2>&1
}
log "resolving package closure"
if ! fetch_debs; then
  # Missing or outdated apt lists (fresh machine, or versions gone from the
  # mirror): refresh once if we are allowed to.
  [[ $(id -u) -eq 0 ]] ||
    die "apt could not resolve/download ${PACKAGES[*]} (try 'sudo apt-get update'): $(tail -n 5 "$WORK/apt.log")"
  log "apt lists look stale, running apt-get update"
  apt-get update -q >/dev/null || die "apt-get update failed"
  fetch_debs || die "apt could not resolve/download ${PACKAGES[*]}: $(tail -n 5 "$WORK/apt.log")"
fi

log "unpacking into rootfs"
for deb in "$WORK"/debs/*.deb; do
  dpkg-deb --fsys-tarfile "$deb" |
    tar -x -p --no-same-owner -C "$ROOTFS" \
      --exclude='./usr/share/doc/*' --exclude='./usr/share/man/*' \
      --exclude='./usr/share/info/*' --exclude='./usr/share/lintian/*' \
      --exclude='./usr/share/locale/*'
done

# Xvnc is normally an update-alternatives link made by a maintainer script,
# which never runs here.
[[ -e "$ROOTFS/usr/bin/Xvnc" ]] || ln -s Xtigervnc "$ROOTFS/usr/bin/Xvnc"

# busybox provides sh, sleep, ls, ... Link every applet that no real
# package file already provides (done from the host: busybox is static).
while IFS= read -r applet; do
  [[ -e "$ROOTFS/$applet" || -L "$ROOTFS/$applet" ]] && continue
  mkdir -p "$ROOTFS/$(dirname "$applet")"
  ln -s /bin/busybox "$ROOTFS/$applet"
done < <("$ROOTFS/bin/busybox" --list-full)

mkdir -p "$ROOTFS/etc" "$ROOTFS/tmp/.X11-unix" "$ROOTFS/var/tmp" "$ROOTFS/root" \
  "$ROOTFS/usr/local/bin" "$ROOTFS$USER_HOME"
chmod 1777 "$ROOTFS/tmp" "$ROOTFS/tmp/.X11-unix" "$ROOTFS/var/tmp"
chmod 0700 "$ROOTFS/root"
chmod 0755 "$ROOTFS$USER_HOME"
cat >"$ROOTFS/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/sh
$USER_NAME:x:$USER_UID:$USER_UID:StreamSpace user:$USER_HOME:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$ROOTFS/etc/group" <<EOF
root:x:0:
tty:x:5:
utmp:x:43:
$USER_NAME:x:$USER_UID:
nogroup:x:65534:
EOF
printf 'root:*:19000:0:99999:7:::\n%s:*:19000:0:99999:7:::\n' "$USER_NAME" >"$ROOTFS/etc/shadow"
chmod 0640 "$ROOTFS/etc/shadow"
# A linker cache speeds up start; it needs chroot, so only when root.
if [[ $(id -u) -eq 0 ]]; then
  ldconfig -r "$ROOTFS" 2>/dev/null || log "ldconfig failed (harmless: ld.so searches the multiarch dirs anyway)"
fi

# Xvnc is PID 1 (exec) so `docker stop` sends SIGTERM straight to it and the
# container exits at once. xterm runs in a background loop that waits for the
# X socket and restarts it if the user closes it. There is no window manager,
# so focus follows the pointer; a maximized xterm gets keys wherever it is.
cat >"$ROOTFS/usr/local/bin/streamspace-session" <<'EOF'
#!/bin/sh
set -u
: "${HOME:=/home/user}" "${XDG_CACHE_HOME:=/tmp/.cache}"
: "${VNC_GEOMETRY:=1280x800}" "${VNC_DEPTH:=24}"
export HOME XDG_CACHE_HOME DISPLAY=:1
# HOME may be a freshly mounted (possibly empty or read-only) volume.
mkdir -p "$HOME" "$XDG_CACHE_HOME" 2>/dev/null
cd "$HOME" 2>/dev/null || cd /
# A stale socket from a previous run (docker start) would fool the wait below.
rm -f /tmp/.X11-unix/X1 /tmp/.X1-lock 2>/dev/null
# A tmpfs /tmp hides the image's socket dir, and Xvnc only creates it as root.
mkdir -p /tmp/.X11-unix 2>/dev/null && chmod 1777 /tmp/.X11-unix 2>/dev/null
(
  while :; do
    while [ ! -S /tmp/.X11-unix/X1 ]; do sleep 0.05; done
    xterm -maximized -title streamspace
    sleep 1
  done
) </dev/null &
exec Xvnc :1 -rfbport 5901 -SecurityTypes None -AlwaysShared \
  -desktop streamspace -geometry "$VNC_GEOMETRY" -depth "$VNC_DEPTH" \
  -nolisten tcp
EOF
chmod 0755 "$ROOTFS/usr/local/bin/streamspace-session"

# Everything belongs to root except the user's home; tar sets owners so that
# this also works when the build runs unprivileged.
log "importing as $TAG"
tar -C "$ROOTFS" --numeric-owner --owner=0 --group=0 \
  --exclude=".$USER_HOME" -cf "$WORK/rootfs.tar" .
tar -C "$ROOTFS" --numeric-owner --owner="$USER_UID" --group="$USER_UID" \
  -rf "$WORK/rootfs.tar" ".$USER_HOME"
OLD_ID="$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)"
NEW_ID="$(docker import \
  -c 'CMD ["/usr/local/bin/streamspace-session"]' \
  -c "USER $USER_UID:$USER_UID" \
  -c "WORKDIR $USER_HOME" \
  -c "ENV HOME=$USER_HOME USER=$USER_NAME XDG_CACHE_HOME=/tmp/.cache VNC_GEOMETRY=1280x800 VNC_DEPTH=24 PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
  -c 'EXPOSE 5901' \
  -c 'LABEL io.streamspace.image=desktop' \
  -m "streamspace desktop image (${PACKAGES[*]})" \
  "$WORK/rootfs.tar" "$TAG")"
# Rebuilding re-tags; drop the previous image unless a container still uses it.
if [[ -n "$OLD_ID" && "$OLD_ID" != "$NEW_ID" ]]; then
  docker image rm "$OLD_ID" >/dev/null 2>&1 || true
fi
log "built $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
}

main "$@" </dev/null
