# shellcheck shell=bash
# Building session images from Debian packages, without a registry.
#
# No container registry is reachable on our machines, so `docker pull` and
# FROM-based Dockerfiles are out. Instead apt resolves the package closure
# against an empty dpkg status (i.e. "as if nothing were installed"), we
# download and unpack those .debs into a directory and `docker import` it.
#
# Sourced by images/*/build.sh, which set IMAGE_NAME, PACKAGES and SKIP_RE
# (and optionally KEEP_RE) first. Only functions and constants are defined
# here: the Rust binary pipes this file and an image's build.sh to `bash -s`
# as one script.

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

# Downloads the closure of $PACKAGES, less what matches $SKIP_RE unless it
# also matches $KEEP_RE (optional: lets a script skip a family, such as
# python3-*, except a few members).
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
  mapfile -t want < <(awk -F= -v re="$SKIP_RE" -v keep="${KEEP_RE:-^$}" \
    '$1 !~ re || $1 ~ keep' "$WORK/closure")
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
  # Which recipe (library + script) made it, so a changed one rebuilds
  # (`streamspace up`, scripts/test.sh).
  [[ -z ${STREAMSPACE_IMAGE_RECIPE:-} ]] ||
    set -- "$@" -c "LABEL io.streamspace.recipe=$STREAMSPACE_IMAGE_RECIPE"
  old_id="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
  new_id="$(docker import "$@" "$WORK/rootfs.tar" "$tag")"
  if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
  fi
  log "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
}

# Adds /etc/passwd, group and shadow with root, the session user
# ($USER_NAME, uid/gid $USER_UID, home $USER_HOME) and nobody, and the
# directories every session image needs (maintainer scripts would have made
# them; they never run here).
rootfs_add_user() {
  mkdir -p "$ROOTFS/etc" "$ROOTFS/tmp/.X11-unix" "$ROOTFS/var/tmp" "$ROOTFS/root" \
    "$ROOTFS/usr/local/bin" "$ROOTFS$USER_HOME"
  chmod 1777 "$ROOTFS/tmp" "$ROOTFS/tmp/.X11-unix" "$ROOTFS/var/tmp"
  chmod 0700 "$ROOTFS/root"
  chmod 0755 "$ROOTFS$USER_HOME"
  cat >"$ROOTFS/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/bin/sh
$USER_NAME:x:$USER_UID:$USER_UID:StreamSpace user:$USER_HOME:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
  cat >"$ROOTFS/etc/group" <<GROUP
root:x:0:
tty:x:5:
utmp:x:43:
$USER_NAME:x:$USER_UID:
nogroup:x:65534:
GROUP
  printf 'root:*:19000:0:99999:7:::\n%s:*:19000:0:99999:7:::\n' "$USER_NAME" >"$ROOTFS/etc/shadow"
  chmod 0640 "$ROOTFS/etc/shadow"
}

# Writes $WORK/rootfs.tar: everything owned by root except the user's home,
# which belongs to $USER_UID (so a new Docker volume mounted there, which
# starts as a copy of it, is writable). tar sets the owners, so this also
# works when the build runs unprivileged.
rootfs_pack() {
  tar -C "$ROOTFS" --numeric-owner --owner=0 --group=0 \
    --exclude=".$USER_HOME" -cf "$WORK/rootfs.tar" .
  tar -C "$ROOTFS" --numeric-owner --owner="$USER_UID" --group="$USER_UID" \
    -rf "$WORK/rootfs.tar" ".$USER_HOME"
}

# Runs one of the rootfs's own programs on the build host through the
# rootfs's dynamic loader and libraries (apt resolved them for this host's
# architecture), to build the caches a maintainer script or trigger would
# have built (GSettings schemas, gdk-pixbuf loaders, fonts). Needs neither
# root nor chroot, so unprivileged builds get the caches too.
rootfs_run() {
  local prog=$1 ldso libdirs
  shift
  ldso="$(find "$ROOTFS/lib" "$ROOTFS/usr/lib" -maxdepth 2 -name 'ld-linux*.so.[0-9]' 2>/dev/null | head -n 1)"
  [[ -n "$ldso" ]] || die "no dynamic loader in the rootfs"
  libdirs="$(find "$ROOTFS/lib" "$ROOTFS/usr/lib" -maxdepth 1 -type d -name '*-linux-gnu*' | paste -sd:)"
  "$ldso" --library-path "$libdirs" "$ROOTFS$prog" "$@"
}

# Installs /usr/local/bin/streamspace-session, the CMD of the images with a
# window manager: Xvnc on :1 (RFB on 5901, no password: the control plane
# authenticates viewers) is PID 1, so `docker stop` ends the container at
# once; once its X socket exists, the image's own
# /usr/local/bin/streamspace-desktop starts the desktop (window manager,
# apps, services). Xvnc's link is made here because update-alternatives,
# which normally makes it, never runs.
rootfs_x_session() {
  [[ -e "$ROOTFS/usr/bin/Xvnc" ]] || ln -s Xtigervnc "$ROOTFS/usr/bin/Xvnc"
  cat >"$ROOTFS/usr/local/bin/streamspace-session" <<'SESSION'
#!/bin/sh
set -u
: "${HOME:=/home/user}" "${XDG_CACHE_HOME:=/tmp/.cache}"
: "${VNC_GEOMETRY:=1280x800}" "${VNC_DEPTH:=24}"
# HOME may be a volume: a new one (writable, a copy of the image's), one
# kept from an earlier session, or a bind mount the user cannot write. Apps
# such as Firefox refuse to start without a writable HOME, so the last case
# falls back to one under /tmp (lost when the session ends) and says so.
mkdir -p "$HOME" 2>/dev/null
if ! (: >"$HOME/.streamspace-probe") 2>/dev/null; then
  echo "streamspace-session: $HOME is not writable by uid $(id -u); using /tmp/home (not kept)" >&2
  HOME=/tmp/home
  mkdir -p "$HOME"
fi
rm -f "$HOME/.streamspace-probe"
XDG_RUNTIME_DIR="/tmp/runtime-$(id -u)"
export HOME XDG_CACHE_HOME XDG_RUNTIME_DIR DISPLAY=:1
mkdir -p "$XDG_CACHE_HOME" "$XDG_RUNTIME_DIR" 2>/dev/null
chmod 0700 "$XDG_RUNTIME_DIR" 2>/dev/null
cd "$HOME" 2>/dev/null || cd /
# A stale socket from a previous run (docker start) would fool the wait below.
rm -f /tmp/.X11-unix/X1 /tmp/.X1-lock 2>/dev/null
# A tmpfs /tmp hides the image's socket dir, and Xvnc only creates it as root.
mkdir -p /tmp/.X11-unix 2>/dev/null && chmod 1777 /tmp/.X11-unix 2>/dev/null
(
  while [ ! -S /tmp/.X11-unix/X1 ]; do sleep 0.05; done
  exec /usr/local/bin/streamspace-desktop
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
SESSION
  chmod 0755 "$ROOTFS/usr/local/bin/streamspace-session"
}

# Packages the closure of an IceWM desktop pulls in that no session runs,
# as alternatives for SKIP_RE: Mesa/LLVM (X and Firefox render in software
# without a GL driver), perl, packaging tools, PAM, systemd and the D-Bus
# daemons (libdbus stays), and the Ghostscript/HEIF/JPEG XL/AV1 stacks that
# imlib2 (IceWM's image library) loads as plugins only.
rootfs_icewm_skips() {
  printf '%s' 'libllvm[0-9]*|libz3-[0-9]*|libgl1-mesa-dri|libglx-mesa0|libglapi-mesa|libdrm-(amdgpu1|intel1|nouveau2|radeon1)|libsensors.*|libedit2|perl|perl-base|perl-modules-.*|libperl.*|lib.*-perl|libdb5\.3|libgdbm.*|dpkg|tar|debconf|sysvinit-utils|lsb-base|usrmerge|init-system-helpers|passwd|adduser|libsemanage.*|libpam-modules.*|libpam-runtime|systemd|systemd-sysv|libsystemd-shared|libpam-systemd|dbus|dbus-bin|dbus-daemon|dbus-user-session|dbus-system-bus-common|dbus-session-bus-common|dconf-service|mount|dmsetup|libdevmapper.*|libcryptsetup.*|libfdisk1|libkmod2|libargon2-1|libip4tc2|libjson-c5|libgs10|libgs10-common|libgs-common|fonts-urw-base35|poppler-data|libspectre1|libheif1|libde265-0|libx265-.*|libjxl.*|libhwy1|libaom3|libdav1d6|libopenjp2-7|libijs-.*|libjbig2dec0|libpaper1|libidn12|libnuma1'
}

# Where the packages put 48x48 application icons; IceWM's toolbar finds
# icons named by absolute path only (its theme lookup misses hicolor here).
ICONS=/usr/share/icons/hicolor/48x48/apps

# IceWM as a product-like desktop: a taskbar with a clock, a start menu and
# quick-launch buttons for `$1` (lines of "prog Name icon command"), no
# logout entry (ending the session is StreamSpace's job); and xterm in an
# outline font (its default bitmap font is in a package we do not install).
rootfs_desktop_config() {
  printf 'XTerm*faceName: Monospace\nXTerm*faceSize: 11\n' >>"$ROOTFS/etc/X11/app-defaults/XTerm"
  # D-Bus clients (GTK) want a machine id; one per image is enough here.
  tr -d '-' </proc/sys/kernel/random/uuid >"$ROOTFS/etc/machine-id"
  local dir="$ROOTFS/etc/X11/icewm"
  mkdir -p "$dir"
  cat >"$dir/preferences" <<'PREFS'
ShowLogoutMenu=0
ShowLogoutSubMenu=0
TaskBarShowWorkspaces=0
TaskBarShowCPUStatus=0
TaskBarShowNetStatus=0
TaskBarShowMailboxStatus=0
TimeFormat="%H:%M"
PREFS
  # A plain background: the default theme's wallpaper goes (an empty
  # DesktopBackgroundImage does not override a theme's).
  sed -i '/^DesktopBackground/d' "$ROOTFS/usr/share/icewm/themes/default/default.theme"
  printf 'DesktopBackgroundColor="rgb:1E/3A/5F"\n' >"$dir/prefoverride"
  printf 'Theme="default"\n' >"$dir/theme"
  printf '%s\n' "$1" >"$dir/toolbar"
  printf '%s\n' "$1" >"$dir/menu"
}

# Session sound (docs/AUDIO.md): the packages an image adds for it, the
# members of their closure no session needs (for SKIP_RE: video/image codecs
# and the GUI toolkits of GStreamer's other plugins, ALSA, systemd, PAM,
# D-Bus daemons), and the setup rootfs_audio does after rootfs_unpack.
AUDIO_PACKAGES=(pulseaudio pulseaudio-utils gstreamer1.0-tools gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good)
rootfs_audio_skips() {
  printf '%s' 'libavcodec[0-9]*|libavutil[0-9]*|libswresample[0-9]*|libaom3|libdav1d6|librav1e0|libsvtav1enc1|libx264-.*|libx265-.*|libxvidcore4|libvpx7|libmfx1|libcodec2-.*|libva2|libva-.*|libvdpau1|ocl-icd-libopencl1|libjxl.*|libhwy1|libopenjp2-7|libwebp.*|libtiff6|libjbig0|liblerc4|libdeflate0|libzvbi.*|libshine3|libgsm1|libsnappy1v5|libnuma1|libtheora0|libdv4|libv4l.*|libaa1|libcaca0|libslang2|libncurses.*|libgpm2|libgdk-pixbuf.*|librsvg2-2|libcairo.*|libpango.*|libharfbuzz0b|libgraphite2-3|libthai.*|libdatrie1|libfribidi0|fontconfig|shared-mime-info|liblcms2-2|libvisual-.*|libcdparanoia0|libraw1394-11|libavc1394-0|libiec61883-0|libgudev-.*|libtag1v5.*|libwavpack1|libspeex1|libtwolame0|libshout3|libsoup2\.4.*|libproxy1v5|libpsl5|glib-networking.*|libssl3|libsqlite3-0|libjack-.*|libsamplerate0|libasound2.*|libfftw3-.*|libwebrtc-audio-processing1|libpulsedsp|libxtst6|libxdamage1|libxcb-render0|libudev1|iso-codes|gstreamer1\.0-pulseaudio|systemd|systemd-sysv|libsystemd-shared|libpam-.*|dbus|dbus-.*|dconf-.*|libdconf1|gsettings-desktop-schemas|adduser|passwd|init-system-helpers|usrmerge|mount|dmsetup|libdevmapper.*|libcryptsetup.*|libfdisk1|libkmod2|libargon2-1|libip4tc2|libjson-c5|libapparmor1|libsemanage.*|libsepol2|libcap2-bin|procps|libproc2-0|lib.*-perl'
}

# The TCP port the session's sound is served on (template port protocol
# "audio"), and the GStreamer plugins and PulseAudio modules it uses; the
# others go (their libraries were skipped, and fewer plugins make
# GStreamer's first-start registry scan quicker).
AUDIO_PORT=5911
# The TCP port the viewer's microphone comes in on (template port protocol
# "microphone"): the same framing, the other way.
MIC_PORT=5912
AUDIO_GST_PLUGINS='coreelements|pulseaudio|audioconvert|audioresample|audiotestsrc|opus|rtp|tcp'
AUDIO_PA_MODULES='module-null-sink|module-native-protocol-unix|libprotocol-native'

# Prunes the plugins and modules, and installs the PulseAudio script and
# /usr/local/bin/streamspace-audio, which a session script starts in the
# background: PulseAudio with one null sink (every app plays into it), and
# GStreamer encoding its monitor to Opus, RTP-packetized and framed as in
# RFC 4571 (a 16-bit big-endian length before each packet), served to every
# client of TCP $AUDIO_PORT.
rootfs_audio() {
  local f
  for f in "$ROOTFS"/usr/lib/*/gstreamer-1.0/libgst*.so; do
    [[ "$(basename "$f" .so)" =~ ^libgst($AUDIO_GST_PLUGINS)$ ]] || rm -f "$f"
  done
  for f in "$ROOTFS"/usr/lib/pulse-*/modules/*.so; do
    [[ "$(basename "$f" .so)" =~ ^($AUDIO_PA_MODULES)$ ]] || rm -f "$f"
  done
  cat >"$ROOTFS/etc/pulse/streamspace.pa" <<'PA'
# The session's sound server (started by /usr/local/bin/streamspace-audio):
# one sink that plays to nobody; its monitor is what the viewer hears. A
# second one, "mic", is the viewer's microphone: what comes in on the
# microphone port plays into it, and apps record its monitor, the default
# source.
load-module module-null-sink sink_name=session rate=48000 channels=2 sink_properties=device.description=Session
load-module module-null-sink sink_name=mic rate=48000 channels=2 sink_properties=device.description=Microphone
set-default-sink session
set-default-source mic.monitor
load-module module-native-protocol-unix auth-anonymous=1 auth-cookie-enabled=0 socket=/tmp/pulse/native
PA
  cat >"$ROOTFS/usr/local/bin/streamspace-audio" <<AUDIO
#!/bin/sh
# The session's sound (docs/AUDIO.md). Both halves restart if they die.
set -u
: "\${AUDIO_PORT:=$AUDIO_PORT}"
: "\${MIC_PORT:=$MIC_PORT}"
AUDIO
  cat >>"$ROOTFS/usr/local/bin/streamspace-audio" <<'AUDIO'
# PulseAudio keeps its runtime files under /tmp, never in HOME (which may be
# read-only or shared with other sessions of the user).
export PULSE_RUNTIME_PATH=/tmp/pulse PULSE_STATE_PATH=/tmp/pulse/state
export PULSE_SERVER=unix:/tmp/pulse/native
mkdir -p /tmp/pulse/state 2>/dev/null && chmod 0700 /tmp/pulse 2>/dev/null
rm -f /tmp/pulse/native /tmp/pulse/pid 2>/dev/null
(
  while :; do
    pulseaudio -n -F /etc/pulse/streamspace.pa --daemonize=no --use-pid-file=no \
      --exit-idle-time=-1 --disallow-exit --high-priority=no --realtime=no \
      --log-target=stderr --log-level=error
    sleep 1
  done
) &
while [ ! -S /tmp/pulse/native ]; do sleep 0.05; done
# The microphone: one viewer at a time sends RFC 4571-framed RTP/Opus; it is
# decoded into the "mic" sink. When the viewer goes the pipeline ends (EOS)
# and the next one listens again.
(
  while :; do
    gst-launch-1.0 -q tcpserversrc host=0.0.0.0 port="$MIC_PORT" \
      ! 'application/x-rtp-stream,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96' \
      ! rtpstreamdepay ! rtpopusdepay ! opusdec plc=true ! audioconvert ! audioresample \
      ! audio/x-raw,rate=48000,channels=2 \
      ! pulsesink device=mic sync=false buffer-time=60000 latency-time=10000
    sleep 0.2
  done
) &
# Latency: 10 ms capture periods and Opus frames, CELT only
# (restricted-lowdelay: 5 ms algorithmic delay instead of 26.5), no clock
# sync at the sink. A client more than 0.5 s behind skips to the newest
# packet instead of hearing stale sound.
while :; do
  gst-launch-1.0 -q pulsesrc device=session.monitor buffer-time=40000 latency-time=10000 \
    ! audio/x-raw,rate=48000,channels=2 ! audioconvert \
    ! opusenc bitrate=96000 frame-size=10 audio-type=restricted-lowdelay \
    ! rtpopuspay pt=96 ! rtpstreampay \
    ! tcpserversink host=0.0.0.0 port="$AUDIO_PORT" sync=false \
      unit-format=time units-soft-max=500000000 recover-policy=latest
  sleep 1
done
AUDIO
  chmod 0755 "$ROOTFS/usr/local/bin/streamspace-audio"
}
