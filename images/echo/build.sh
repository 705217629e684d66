#!/usr/bin/env bash
# Build the benchmark target image `streamspace/echo:local` from Debian
# packages: a TCP server on one port that first sends an RFB banner (so the
# agent's readiness probe reports the session Running) and then either echoes
# every byte back (MODE=echo) or streams zeros forever (MODE=source).
#
# Usage: build.sh [TAG]            (default TAG: streamspace/echo:local)
#
# Method (no registry is reachable): images/lib/debian-rootfs.sh.
set -euo pipefail

IMAGE_NAME="echo"
TAG="${1:-streamspace/echo:local}"
# socat accepts and forks, busybox gives /bin/sh and printf, coreutils' cat
# copies with 128 KiB buffers (busybox's uses 4 KiB).
PACKAGES=(socat busybox-static coreutils)
# Pulled in by the closure, never run here.
SKIP_RE='^(perl|perl-base|perl-modules-.*|libperl.*|dpkg|tar|debconf|sysvinit-utils|lsb-base|libdb5\.3|libgdbm.*)$'

# shellcheck source=images/lib/debian-rootfs.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/debian-rootfs.sh"

main() {
rootfs_prepare
rootfs_unpack

mkdir -p "$ROOTFS/etc" "$ROOTFS/tmp" "$ROOTFS/usr/local/bin"
chmod 1777 "$ROOTFS/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
  >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOTFS/etc/group"
rootfs_ldconfig

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

tar -C "$ROOTFS" --numeric-owner --owner=0 --group=0 -cf "$WORK/rootfs.tar" .
rootfs_import "$TAG" \
  -c 'CMD ["/usr/local/bin/streamspace-echo"]' \
  -c 'USER 65534:65534' \
  -c 'ENV MODE=echo PORT=5900 PATH=/usr/local/bin:/usr/bin:/bin' \
  -c 'EXPOSE 5900' \
  -c 'LABEL io.streamspace.image=echo' \
  -m "streamspace echo/source benchmark target (${PACKAGES[*]})"
}

main "$@" </dev/null
