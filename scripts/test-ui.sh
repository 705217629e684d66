#!/usr/bin/env bash
# Browser tests of the web UI against a real binary, a real Docker agent and
# Debian's Chromium:
#
#   scripts/test-ui.sh path/to/streamspace [tests/ui/NAME.test.mjs ...]
#
# Starts `streamspace up` on `--listen 127.0.0.1:0` (the kernel picks the
# port; the URL comes from its startup line) with a fresh data directory and
# a known admin password, waits for /healthz, puts Debian's nginx and
# Caddy in front of it over TLS (tests/ui/proxies.sh), runs tests/ui (node
# --test with playwright-core; all of them, or the files named), and saves
# screenshots and the server and proxy logs to test-artifacts/ui/. Always
# stops the server and the proxies and removes the containers and volumes it
# created. Exits non-zero when a test fails.
#
# The binary must embed a current UI: run scripts/build-ui.sh before building it.
set -euo pipefail

log() { printf 'test-ui: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

[[ $# -ge 1 ]] || die "usage: scripts/test-ui.sh path/to/streamspace [tests/ui/NAME.test.mjs ...]"
[[ -x $1 ]] || die "$1 is not an executable streamspace binary (build it: cargo build -p streamspace-cli)"
BINARY=$(realpath "$1")
shift
TESTS=()
for t in "$@"; do TESTS+=("$(realpath "$t")"); done
cd "$(dirname "$0")/.."
ROOT=$PWD
ARTIFACTS=$ROOT/test-artifacts/ui

command -v node >/dev/null 2>&1 || die "node not found: run scripts/install-deps.sh"
[[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium not found: run scripts/install-deps.sh"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable: run scripts/install-deps.sh"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || die "nginx not found: run scripts/install-deps.sh"
CADDY=$(command -v caddy || echo /usr/bin/caddy)
[[ -x $CADDY ]] || die "caddy not found: run scripts/install-deps.sh"
command -v openssl >/dev/null 2>&1 || die "openssl not found: run scripts/install-deps.sh"
command -v cc >/dev/null 2>&1 || die "no C compiler (cc) found: install gcc"

# The test runner's own dependencies (playwright-core only; no browser download).
(
  cd tests/ui
  stamp=node_modules/.streamspace-installed
  if [[ ! -f $stamp || package-lock.json -nt $stamp ]]; then
    log "installing test dependencies (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error
    touch "$stamp"
  fi
)

rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"
WORK=$(mktemp -d /tmp/streamspace-ui-test.XXXXXX)
DATA=$WORK/data
# The proxies in front (tests/ui/proxies.sh) need ports chosen beforehand.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The server's, from its startup line.
URL=
PORT=
PASSWORD=ui-test-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
# Test users get a unique prefix, so their home volumes never collide with a
# developer's own `streamspace up` on the same engine.
RUN_ID=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
SERVER_PID=
# shellcheck source=scripts/lib/server-url.sh
source scripts/lib/server-url.sh
# shellcheck source=tests/ui/proxies.sh
source tests/ui/proxies.sh

cleanup() {
  local status=$?
  stop_proxies
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  local agent=""
  if [[ -f $DATA/agent/agent.json ]]; then
    agent=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["agent_id"])' \
      "$DATA/agent/agent.json" 2>/dev/null || true)
  fi
  local containers="" volumes=""
  if [[ -n $agent ]]; then
    containers=$(docker ps -aq --filter "label=io.streamspace.agent=$agent" 2>/dev/null || true)
    volumes=$(docker volume ls -q --filter "label=io.streamspace.agent=$agent" 2>/dev/null || true)
  fi
  # Belt and braces: anything of this run's test users.
  for user in "ui-$RUN_ID-alice" "ui-$RUN_ID-bob" "ui-$RUN_ID-carol" "ui-$RUN_ID-dora"; do
    containers+=" $(docker ps -aq --filter "label=io.streamspace.user=$user" 2>/dev/null || true)"
    volumes+=" $(docker volume ls -q --filter "label=io.streamspace.user=$user" 2>/dev/null || true)"
  done
  # shellcheck disable=SC2086
  [[ -z ${containers// /} ]] || docker rm -f $containers >/dev/null 2>&1 || true
  # shellcheck disable=SC2086
  [[ -z ${volumes// /} ]] || docker volume rm -f $volumes >/dev/null 2>&1 || true
  [[ -f $WORK/server.log ]] && cp "$WORK/server.log" "$ARTIFACTS/server.log"
  rm -rf "$WORK"
  if [[ $status -ne 0 ]]; then
    log "FAILED: screenshots and the server log are in test-artifacts/ui/"
  fi
  exit "$status"
}
trap cleanup EXIT INT TERM

# Keeps Docker's network changes from ending Chromium's connections (see the file).
PRELOAD=$WORK/no-netlink.so
cc -shared -fPIC -O2 -o "$PRELOAD" tests/ui/no-netlink.c -ldl || die "cannot build tests/ui/no-netlink.c"

# Chromium finds every *.localhost name on loopback by itself: web apps' own
# hosts need no DNS in the tests.
APPS_DOMAIN=apps.localhost
log "starting $BINARY up on 127.0.0.1, a port of the kernel's choice"
STREAMSPACE_ADMIN_PASSWORD=$PASSWORD \
  "$BINARY" up --listen 127.0.0.1:0 --data-dir "$DATA" --apps-domain "$APPS_DOMAIN" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

# `up` may first build the desktop image (about 10 s), then prints its URL.
deadline=$((SECONDS + 180))
if ! URL=$(server_url "$WORK/server.log" "$SERVER_PID" 180); then
  tail -n 30 "$WORK/server.log" >&2 || true
  kill -0 "$SERVER_PID" 2>/dev/null || die "streamspace exited before it printed its URL"
  die "streamspace printed no URL within 180 s"
fi
PORT=$(url_port "$URL") || die "no port in the server's URL $URL"
log "server at $URL"
until curl -fsS "$URL/healthz" >/dev/null 2>&1; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    tail -n 30 "$WORK/server.log" >&2 || true
    die "streamspace exited before it was healthy"
  fi
  ((SECONDS < deadline)) || die "streamspace was not healthy within 180 s"
  sleep 0.3
done
log "server healthy"

start_proxies
log "nginx and Caddy in front on ports ${PROXY_PORTS[*]}; running the browser tests"

cd tests/ui
((${#TESTS[@]})) || TESTS=(./*.test.mjs)
STREAMSPACE_URL=$URL \
  STREAMSPACE_ADMIN_PASSWORD=$PASSWORD \
  STREAMSPACE_TEST_RUN=$RUN_ID \
  STREAMSPACE_APPS_DOMAIN=$APPS_DOMAIN \
  STREAMSPACE_ARTIFACTS=$ARTIFACTS \
  STREAMSPACE_CHROMIUM_PRELOAD=$PRELOAD \
  node --test --test-concurrency=1 --test-reporter=spec "${TESTS[@]}"
log "all browser tests passed; screenshots in test-artifacts/ui/"
