#!/usr/bin/env bash
# Build the StreamSpace desktop session image from Debian packages
# (method: images/lib/debian-rootfs.sh).
#
# Usage: build.sh [TAG]            (default TAG: streamspace/desktop:local)
#        cat ../lib/debian-rootfs.sh build.sh | bash -s -- TAG
#                                  (how the Rust binary runs its embedded copy)
set -euo pipefail

IMAGE_NAME=desktop
TAG="${1:-streamspace/desktop:local}"
PACKAGES=(tigervnc-standalone-server xterm x11-apps busybox-static libc-bin)
# xclip: scripts (and the tests) read and set the session's clipboard.
PACKAGES+=(xclip)
# Pulled in by the closure but not needed at runtime: Mesa/LLVM (Xvnc runs
# without a GL vendor library), perl, man/groff, and the packaging tools.
# Xvnc/xterm/x11-apps link none of these; dropping them saves ~290 MB.
SKIP_RE='^(libllvm[0-9]*|libz3-[0-9]*|libicu[0-9]*|libxml2|libgl1-mesa-dri|libglx-mesa0|libglapi-mesa|libdrm.*|libsensors.*|libedit2|perl|perl-base|perl-modules-.*|libperl.*|lib.*-perl|libdb5\.3|libgdbm.*|man-db|groff-base|libuchardet0|libpipeline1|bsdextrautils|dpkg|tar|debconf|sysvinit-utils|lsb-base)$'
USER_NAME=user
USER_UID=1000
USER_HOME=/home/user

# Piped to bash, the library arrives first; run from a file, load it.
if ! declare -F rootfs_prepare >/dev/null; then
  # shellcheck source=images/lib/debian-rootfs.sh
  source "$(dirname "${BASH_SOURCE[0]}")/../lib/debian-rootfs.sh"
fi

# Session sound (docs/AUDIO.md): PulseAudio and GStreamer, less the parts of
# their closure it does not use. (libelf1, skipped above before sound came,
# is GStreamer's: libdw needs it.)
PACKAGES+=("${AUDIO_PACKAGES[@]}")
SKIP_RE="${SKIP_RE%)\$}|$(rootfs_audio_skips))\$"

# The body is one function so bash has read all of it before running
# anything: with `bash -s` the script arrives on stdin, and a command that
# reads stdin (given </dev/null below) could otherwise swallow the rest.
# (Not indented, to keep the heredocs below literal.)
main() {
rootfs_prepare
rootfs_unpack

# Xvnc is normally an update-alternatives link made by a maintainer script,
# which never runs here.
[[ -e "$ROOTFS/usr/bin/Xvnc" ]] || ln -s Xtigervnc "$ROOTFS/usr/bin/Xvnc"

rootfs_add_user
rootfs_audio
rootfs_ldconfig

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
# Sound starts once the X server is up, so it never delays the screen.
(
  while [ ! -S /tmp/.X11-unix/X1 ]; do sleep 0.05; done
  exec /usr/local/bin/streamspace-audio
) </dev/null &
# The template's clipboard policy, set by the control plane (docs/UI.md):
# Xvnc itself refuses the directions it forbids.
case "${STREAMSPACE_CLIPBOARD:-both}" in
  to_session) accept=1 send=0 ;; from_session) accept=0 send=1 ;;
  both) accept=1 send=1 ;; off) accept=0 send=0 ;;
  *) echo "streamspace-session: unknown STREAMSPACE_CLIPBOARD=$STREAMSPACE_CLIPBOARD; clipboard off" >&2
     accept=0 send=0 ;;
esac
exec Xvnc :1 -rfbport 5901 -SecurityTypes None -AlwaysShared \
  -desktop streamspace -geometry "$VNC_GEOMETRY" -depth "$VNC_DEPTH" \
  -AcceptCutText="$accept" -SendCutText="$send" -AcceptSetDesktopSize="${VNC_RESIZE:-1}" \
  -nolisten tcp
EOF
chmod 0755 "$ROOTFS/usr/local/bin/streamspace-session"

rootfs_pack
rootfs_import "$TAG" \
  -c 'CMD ["/usr/local/bin/streamspace-session"]' \
  -c "USER $USER_UID:$USER_UID" \
  -c "WORKDIR $USER_HOME" \
  -c "ENV HOME=$USER_HOME USER=$USER_NAME XDG_CACHE_HOME=/tmp/.cache VNC_GEOMETRY=1280x800 VNC_DEPTH=24 PULSE_SERVER=unix:/tmp/pulse/native PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
  -c "EXPOSE 5901 $AUDIO_PORT $MIC_PORT" \
  -c 'LABEL io.streamspace.image=desktop' \
  -c "LABEL io.streamspace.audio-port=$AUDIO_PORT" \
  -c "LABEL io.streamspace.microphone-port=$MIC_PORT" \
  -c 'LABEL io.streamspace.clipboard-env=STREAMSPACE_CLIPBOARD' \
  -m "streamspace desktop image (${PACKAGES[*]})"
}

main "$@" </dev/null
