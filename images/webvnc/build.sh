#!/usr/bin/env bash
# Build the web-app session image `streamspace/webvnc:local` from Debian
# packages, the way KasmVNC images work: a desktop (Xvnc, IceWM, xterm) and
# an HTTP server on 6080 that serves noVNC's web client and carries its
# WebSocket to the VNC server (websockify). The same server has a few test
# endpoints (/files, /redirect, /cookie; README.md) for the HTTP proxy's tests.
# Method: images/lib/debian-rootfs.sh.
#
# Usage: build.sh [TAG]            (default TAG: streamspace/webvnc:local)
#        cat ../lib/debian-rootfs.sh build.sh | bash -s -- TAG
#                                  (how the Rust binary runs its embedded copy)
set -euo pipefail

IMAGE_NAME=webvnc
TAG="${1:-streamspace/webvnc:local}"
PACKAGES=(tigervnc-standalone-server xterm icewm fonts-dejavu-core novnc
  python3-websockify busybox-static libc-bin)

# Piped to bash, the library arrives first; run from a file, load it.
if ! declare -F rootfs_prepare >/dev/null; then
  # shellcheck source=images/lib/debian-rootfs.sh
  source "$(dirname "${BASH_SOURCE[0]}")/../lib/debian-rootfs.sh"
fi

# Only noVNC's static files are used: its Node.js, numpy (websockify works
# without it) and the OpenStack libraries of python3-novnc are skipped, as
# is every python3-* package except the interpreter and websockify; and what
# no IceWM session runs (images/lib).
SKIP_RE="^($(rootfs_icewm_skips)|nodejs|libnode[0-9]*|node-.*|python3-.*|websockify|net-tools|libblas3|liblapack3|libgfortran5|libquadmath0|libuv1|libc-ares2|libnghttp2-14|docutils-common|sgml-base|xml-core|tzdata|wget|openssl|ca-certificates)$"
KEEP_RE='^(python3-minimal|python3-websockify)$'
USER_NAME=user
USER_UID=1000
USER_HOME=/home/user

# `/` of the web app: sends the browser to noVNC with a WebSocket path
# computed from where this page was loaded, so it is right at the root of a
# host (`/websockify`) and under a prefix a proxy strips
# (`/apps/{session}/6080/websockify`). Everything else noVNC loads is relative.
write_index() {
  cat >"$ROOTFS/usr/share/novnc/index.html" <<'HTML'
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>StreamSpace web desktop</title>
<script>
  var dir = location.pathname.replace(/[^/]*$/, "");
  var path = (dir + "websockify").replace(/^\/+/, "");
  location.replace("vnc.html?autoconnect=1&resize=remote&reconnect=1&path=" + encodeURIComponent(path));
</script></head>
<body><p>Opening the desktop: <a href="vnc.html?autoconnect=1&amp;resize=remote&amp;reconnect=1">vnc.html</a></p></body>
</html>
HTML
  # noVNC shows its version from package.json, which Debian does not ship.
  printf '{"name": "@novnc/novnc", "version": "1.3.0"}\n' >"$ROOTFS/usr/share/novnc/package.json"
}

# The HTTP server on 6080: websockify's request handler (noVNC's files and
# the WebSocket to Xvnc) plus the test endpoints.
write_server() {
  mkdir -p "$ROOTFS/usr/local/lib/streamspace"
  cat >"$ROOTFS/usr/local/lib/streamspace/webvnc.py" <<'PY'
"""StreamSpace web desktop: noVNC and its WebSocket on one HTTP port.

GET /... serves noVNC's files; a WebSocket upgrade on any path is carried to
the VNC server. Test endpoints for the control plane's HTTP proxy:
  PUT /files/NAME   stores the body (streamed) under /tmp/files, answers JSON
                    {"name", "bytes", "sha256"}
  GET /files/NAME   streams it back with Content-Length
  GET /redirect     302, Location: ./index.html (relative)
  GET /cookie       sets "app=1; Path=/" and echoes the request's Cookie header
"""
import hashlib
import json
import logging
import os
import re
import shutil
import sys

from websockify.websocketproxy import LibProxyServer, ProxyRequestHandler

FILES = "/tmp/files"
NAME = re.compile(r"^/files/([A-Za-z0-9_-][A-Za-z0-9._-]{0,127})$")
MAX_UPLOAD = 1 << 30
CHUNK = 1 << 16


class Handler(ProxyRequestHandler):
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/redirect":
            self.reply(302, b"", [("Location", "./index.html")])
        elif path == "/cookie":
            cookie = self.headers.get("Cookie", "").encode()
            self.reply(200, cookie, [("Set-Cookie", "app=1; Path=/"), ("Content-Type", "text/plain")])
        elif path.startswith("/files/"):
            self.send_stored(path)
        else:
            super().do_GET()

    def do_HEAD(self):
        if self.path.split("?", 1)[0].startswith("/files/"):
            self.send_stored(self.path.split("?", 1)[0])
        else:
            super().do_HEAD()

    def do_PUT(self):
        match = NAME.match(self.path.split("?", 1)[0])
        if not match:
            return self.fail(404, "PUT /files/NAME: NAME is 1-128 of A-Z a-z 0-9 . _ -")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = self.chunked_body()
        else:
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                return self.fail(411, "PUT needs a Content-Length or chunked encoding")
            if int(length) > MAX_UPLOAD:
                return self.fail(413, "uploads are limited to %d bytes" % MAX_UPLOAD)
            chunks = self.sized_body(int(length))
        os.makedirs(FILES, exist_ok=True)
        final = os.path.join(FILES, match.group(1))
        part = final + ".part"
        digest, size = hashlib.sha256(), 0
        try:
            with open(part, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > MAX_UPLOAD:
                        raise ValueError("uploads are limited to %d bytes" % MAX_UPLOAD)
                    digest.update(chunk)
                    out.write(chunk)
        except (ValueError, ConnectionError) as err:
            os.unlink(part)
            return self.fail(400, "upload failed: %s" % err)
        os.replace(part, final)
        body = json.dumps({"name": match.group(1), "bytes": size, "sha256": digest.hexdigest()})
        self.reply(201, body.encode(), [("Content-Type", "application/json")])

    def sized_body(self, length):
        while length:
            chunk = self.rfile.read(min(CHUNK, length))
            if not chunk:
                raise ConnectionError("the body ended %d bytes early" % length)
            length -= len(chunk)
            yield chunk

    def chunked_body(self):
        while True:
            line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise ValueError("bad chunk size line %r" % line[:32])
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass
                return
            yield from self.sized_body(size)
            self.rfile.readline(16)

    def send_stored(self, path):
        match = NAME.match(path)
        file = os.path.join(FILES, match.group(1)) if match else None
        if not file or not os.path.isfile(file):
            return self.fail(404, "no such file: PUT it first")
        with open(file, "rb") as src:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(os.fstat(src.fileno()).st_size))
            self.end_headers()
            if self.command != "HEAD":
                shutil.copyfileobj(src, self.wfile, CHUNK)

    def fail(self, status, message):
        # A refused PUT leaves its body unread: the connection cannot go on,
        # and the client must be told, or it sends its next request on it.
        headers = [("Content-Type", "application/json")]
        if self.command == "PUT":
            self.close_connection = True
            headers.append(("Connection", "close"))
        body = json.dumps({"error": message}).encode()
        self.reply(status, body, headers)

    def reply(self, status, body, headers):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="webvnc: %(message)s")
    port = int(os.environ.get("WEB_PORT", "6080"))
    server = LibProxyServer(
        RequestHandlerClass=Handler, listen_host="", listen_port=port,
        target_host="127.0.0.1", target_port=5901, web="/usr/share/novnc")
    server.daemon_threads = True
    logging.info("serving noVNC and its WebSocket on port %d", port)
    server.serve_forever()


if __name__ == "__main__":
    main()
PY
}

# The body is one function so bash has read all of it before running
# anything (see images/desktop/build.sh). Not indented, to keep heredocs literal.
main() {
local started=$SECONDS
rootfs_prepare
rootfs_unpack
rootfs_add_user
rootfs_ldconfig
write_index
write_server
# Bytecode that dpkg's py3compile would have made: the server starts in
# half the time, and sessions are Running sooner.
PYTHONHOME="$ROOTFS/usr" rootfs_run /usr/bin/python3.11 -m compileall -q -j 0 \
  -s "$ROOTFS" -p / "$ROOTFS/usr/lib/python3.11" "$ROOTFS/usr/lib/python3/dist-packages" \
  "$ROOTFS/usr/local/lib/streamspace" >/dev/null || log "compileall failed (harmless: slower start)"
rootfs_desktop_config "prog Terminal $ICONS/xterm-color.png xterm"
rootfs_x_session

# Started by streamspace-session once X is up; the web server and IceWM
# come back if they die, and a terminal opens.
cat >"$ROOTFS/usr/local/bin/streamspace-desktop" <<'EOF'
#!/bin/sh
# (websockify warns when numpy, which it can do without, is missing.)
(while :; do python3 -W ignore::UserWarning /usr/local/lib/streamspace/webvnc.py; sleep 1; done) &
(while :; do icewm-session; sleep 1; done) &
xterm -geometry 100x30+40+40 &
wait
EOF
chmod 0755 "$ROOTFS/usr/local/bin/streamspace-desktop"

rootfs_pack
rootfs_import "$TAG" \
  -c 'CMD ["/usr/local/bin/streamspace-session"]' \
  -c "USER $USER_UID:$USER_UID" \
  -c "WORKDIR $USER_HOME" \
  -c "ENV HOME=$USER_HOME USER=$USER_NAME LANG=C.UTF-8 XDG_CACHE_HOME=/tmp/.cache VNC_GEOMETRY=1280x800 VNC_DEPTH=24 WEB_PORT=6080 PYTHONDONTWRITEBYTECODE=1 PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
  -c 'EXPOSE 5901 6080' \
  -c 'LABEL io.streamspace.image=webvnc' \
  -m "streamspace web desktop image (${PACKAGES[*]})"
log "done in $((SECONDS - started)) s"
}

main "$@" </dev/null
