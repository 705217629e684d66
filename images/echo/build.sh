#!/usr/bin/env bash
# Build the benchmark target image `streamspace/echo:local` from Debian
# packages: a TCP server on one port that first sends an RFB banner (so the
# agent's readiness probe reports the session Running) and then either echoes
# every byte back (MODE=echo) or streams zeros forever (MODE=source).
#
# Usage: build.sh [TAG]            (default TAG: streamspace/echo:local)
#
# Same method as images/desktop/build.sh (no registry is reachable): apt
# resolves the package closure against an empty dpkg status, we download and
# unpack those .debs into a directory and `docker import` it.
set -euo pipefail

TAG="${1:-streamspace/echo:local}"
# socat accepts and forks, busybox gives /bin/sh and printf, coreutils' cat
# copies with 128 KiB buffers (busybox's uses 4 KiB).
PACKAGES=(socat busybox-static coreutils)
# Pulled in by the closure, never run here.
SKIP_RE='^(perl|perl-base|perl-modules-.*|libperl.*|dpkg|tar|debconf|sysvinit-utils|lsb-base|libdb5\.3|libgdbm.*)$'

log() { printf 'echo-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

main() {
for tool in apt-get dpkg-deb tar docker; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (see scripts/install-deps.sh)"
done
docker info >/dev/null 2>&1 || die "cannot talk to the Docker engine (is dockerd running?)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/streamspace-echo.XXXXXX")"
cleanup() { chmod -R u+w "$WORK" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
ROOTFS="$WORK/rootfs"
mkdir -p "$WORK/debs" "$ROOTFS"
: >"$WORK/empty-status"

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
      --exclude='./usr/share/info/*' --exclude='./usr/share/locale/*'
done

# busybox applets (sh, printf, ...) where no package file exists.
while IFS= read -r applet; do
  [[ -e "$ROOTFS/$applet" || -L "$ROOTFS/$applet" ]] && continue
  mkdir -p "$ROOTFS/$(dirname "$applet")"
  ln -s /bin/busybox "$ROOTFS/$applet"
done < <("$ROOTFS/bin/busybox" --list-full)

mkdir -p "$ROOTFS/etc" "$ROOTFS/tmp" "$ROOTFS/usr/local/bin"
chmod 1777 "$ROOTFS/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
  >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOTFS/etc/group"
if [[ $(id -u) -eq 0 ]]; then
  ldconfig -r "$ROOTFS" 2>/dev/null || log "ldconfig failed (harmless)"
fi

# socat is PID 1 (it exits on SIGTERM, so `docker stop` is quick) and forks
# per connection; `nofork` execs the handler with the socket itself as its
# stdin/stdout, so no process copies bytes between the client and cat. The
# handlers are files because socat's address syntax eats quotes and `\n`.
BIN="$ROOTFS/usr/local/bin"
cat >"$BIN/streamspace-echo-handler" <<'EOF'
#!/bin/sh
printf 'RFB 003.008\n'
exec cat
EOF
cat >"$BIN/streamspace-source-handler" <<'EOF'
#!/bin/sh
printf 'RFB 003.008\n'
exec cat /dev/zero
EOF
cat >"$BIN/streamspace-echo" <<'EOF'
#!/bin/sh
set -u
: "${MODE:=echo}" "${PORT:=5900}"
case "$MODE" in
  echo | source) ;;
  *) echo "MODE must be echo or source, not $MODE" >&2; exit 2 ;;
esac
echo "streamspace-echo: $MODE on port $PORT" >&2
exec socat TCP-LISTEN:"$PORT",fork,reuseaddr,backlog=4096 \
  EXEC:/usr/local/bin/streamspace-"$MODE"-handler,nofork
EOF
chmod 0755 "$BIN"/streamspace-*

log "importing as $TAG"
tar -C "$ROOTFS" --numeric-owner --owner=0 --group=0 -cf "$WORK/rootfs.tar" .
OLD_ID="$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)"
NEW_ID="$(docker import \
  -c 'CMD ["/usr/local/bin/streamspace-echo"]' \
  -c 'USER 65534:65534' \
  -c 'ENV MODE=echo PORT=5900 PATH=/usr/local/bin:/usr/bin:/bin' \
  -c 'EXPOSE 5900' \
  -c 'LABEL io.streamspace.image=echo' \
  -m "streamspace echo/source benchmark target (${PACKAGES[*]})" \
  "$WORK/rootfs.tar" "$TAG")"
if [[ -n "$OLD_ID" && "$OLD_ID" != "$NEW_ID" ]]; then
  docker image rm "$OLD_ID" >/dev/null 2>&1 || true
fi
log "built $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
}

main "$@" </dev/null
