#!/usr/bin/env bash
# Build the full desktop session image `streamspace/full-desktop:local` from
# Debian packages: Xvnc, the IceWM window manager with its taskbar and menu,
# xterm and Firefox ESR (method: images/lib/debian-rootfs.sh).
#
# Usage: build.sh [TAG]            (default TAG: streamspace/full-desktop:local)
#        cat ../lib/debian-rootfs.sh build.sh | bash -s -- TAG
#                                  (how the Rust binary runs its embedded copy)
set -euo pipefail

IMAGE_NAME=full-desktop
TAG="${1:-streamspace/full-desktop:local}"
PACKAGES=(tigervnc-standalone-server xterm icewm firefox-esr fonts-dejavu-core
  fonts-liberation2 libglib2.0-bin busybox-static libc-bin)

# Piped to bash, the library arrives first; run from a file, load it.
if ! declare -F rootfs_prepare >/dev/null; then
  # shellcheck source=images/lib/debian-rootfs.sh
  source "$(dirname "${BASH_SOURCE[0]}")/../lib/debian-rootfs.sh"
fi

# Pulled in by the closure, never run in a session (images/lib).
SKIP_RE="^($(rootfs_icewm_skips))$"
USER_NAME=user
USER_UID=1000
USER_HOME=/home/user

# Firefox's first start without questions, tours or update checks, opening
# a local welcome page (the session may have no internet access).
firefox_setup() {
  local dist="$ROOTFS/usr/lib/firefox-esr/distribution"
  mkdir -p "$dist" "$ROOTFS/usr/share/streamspace"
  cat >"$dist/policies.json" <<'JSON'
{
  "policies": {
    "DisableAppUpdate": true,
    "DisableTelemetry": true,
    "DisableFirefoxStudies": true,
    "DontCheckDefaultBrowser": true,
    "OverrideFirstRunPage": "",
    "OverridePostUpdatePage": "",
    "NoDefaultBookmarks": true,
    "UserMessaging": {"WhatsNew": false, "ExtensionRecommendations": false,
      "FeatureRecommendations": false, "SkipOnboarding": true, "MoreFromMozilla": false},
    "Homepage": {"URL": "file:///usr/share/streamspace/welcome.html", "StartPage": "homepage"}
  }
}
JSON
  cat >"$ROOTFS/usr/share/streamspace/welcome.html" <<'HTML'
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>StreamSpace desktop</title>
<style>
body { font-family: "Liberation Sans", "DejaVu Sans", sans-serif; margin: 0; color: #1e293b;
  background: linear-gradient(160deg, #e0ecff, #f8fafc); min-height: 100vh; }
main { max-width: 44rem; margin: 0 auto; padding: 4rem 2rem; }
h1 { font-size: 2.4rem; margin: 0 0 .5rem; } p { font-size: 1.15rem; line-height: 1.6; }
code { background: #e2e8f0; padding: .1rem .35rem; border-radius: .25rem; }
</style></head>
<body><main>
<h1>Your StreamSpace desktop</h1>
<p>This is Firefox ESR running in a container, streamed to your browser over VNC.</p>
<p>Type an address above to browse. The taskbar below has a menu, a terminal and
Firefox; files you keep in <code>/home/user</code> stay for your next session when the
template has a persistent home.</p>
</main></body></html>
HTML
}

# What dpkg triggers would have built: GSettings schemas (GTK aborts on a
# missing one), the gdk-pixbuf loader list (icons) and the font cache.
build_caches() {
  rootfs_run /usr/bin/glib-compile-schemas "$ROOTFS/usr/share/glib-2.0/schemas" ||
    die "glib-compile-schemas failed"
  local query loaders
  query="$(find "$ROOTFS/usr/lib" -name gdk-pixbuf-query-loaders -type f | head -n 1)"
  loaders="$(dirname "$query")/2.10.0/loaders"
  # The tool writes the paths it was given: strip the build directory.
  rootfs_run "${query#"$ROOTFS"}" "$loaders"/*.so | sed "s|$ROOTFS||g" >"$loaders.cache" ||
    die "gdk-pixbuf-query-loaders failed"
  rootfs_run /usr/bin/fc-cache --sysroot "$ROOTFS" -s -f >/dev/null 2>&1 ||
    log "fc-cache failed (harmless: fontconfig scans the fonts at first use)"
}

# The body is one function so bash has read all of it before running
# anything (see images/desktop/build.sh). Not indented, to keep heredocs literal.
main() {
local started=$SECONDS
rootfs_prepare
rootfs_unpack
rootfs_add_user
rootfs_ldconfig
firefox_setup
build_caches
rootfs_desktop_config "prog Firefox $ICONS/firefox-esr.png firefox-esr
prog Terminal $ICONS/xterm-color.png xterm"
rootfs_x_session

# Started by streamspace-session once X is up. IceWM comes back if it dies;
# Firefox starts once (the taskbar starts it again).
cat >"$ROOTFS/usr/local/bin/streamspace-desktop" <<'EOF'
#!/bin/sh
(while :; do icewm-session; sleep 1; done) &
firefox-esr &
wait
EOF
chmod 0755 "$ROOTFS/usr/local/bin/streamspace-desktop"

rootfs_pack
rootfs_import "$TAG" \
  -c 'CMD ["/usr/local/bin/streamspace-session"]' \
  -c "USER $USER_UID:$USER_UID" \
  -c "WORKDIR $USER_HOME" \
  -c "ENV HOME=$USER_HOME USER=$USER_NAME LANG=C.UTF-8 NO_AT_BRIDGE=1 XDG_CACHE_HOME=/tmp/.cache VNC_GEOMETRY=1280x800 VNC_DEPTH=24 PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
  -c 'EXPOSE 5901' \
  -c 'LABEL io.streamspace.image=full-desktop' \
  -c 'LABEL io.streamspace.clipboard-env=STREAMSPACE_CLIPBOARD' \
  -m "streamspace full desktop image (${PACKAGES[*]})"
log "done in $((SECONDS - started)) s"
}

main "$@" </dev/null
