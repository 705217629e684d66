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
# screenshots and the server and proxy logs to test-artifacts/ui/. A real
# OpenID Connect provider (tests/oidc/, the `oidc-provider` package) runs on
# loopback beside it, and the server gets its --oidc-* flags, for the single
# sign-on tests (tests/ui/oidc.test.mjs). Always stops the server, the
# provider and the proxies and removes the containers and volumes it
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
# The OpenID Connect provider of the single sign-on tests (tests/oidc,
# oidc-provider 9 on jose 6) needs the Web Crypto global of Node.js 20+.
(($(node -p 'process.versions.node.split(".")[0]') >= 20)) ||
  die "Node.js $(node --version) is too old for tests/oidc (oidc-provider): install Node.js 20 or later"
[[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium not found: run scripts/install-deps.sh"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable: run scripts/install-deps.sh"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || die "nginx not found: run scripts/install-deps.sh"
CADDY=$(command -v caddy || echo /usr/bin/caddy)
[[ -x $CADDY ]] || die "caddy not found: run scripts/install-deps.sh"
command -v openssl >/dev/null 2>&1 || die "openssl not found: run scripts/install-deps.sh"
command -v cc >/dev/null 2>&1 || die "no C compiler (cc) found: install gcc"

# The test runner's own dependencies (playwright-core only; no browser
# download) and the OpenID Connect provider's (oidc-provider).
for dir in tests/ui tests/oidc; do
  (
    cd "$dir"
    stamp=node_modules/.streamspace-installed
    if [[ ! -f $stamp || package-lock.json -nt $stamp ]]; then
      log "installing the dependencies of $dir (npm ci)"
      npm ci --no-audit --no-fund --loglevel=error
      touch "$stamp"
    fi
  )
done

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
# The OpenID Connect provider: its port is chosen now, because the server
# is given its issuer URL at start (and asks it nothing until a login).
OIDC_PORT=$(free_port)
OIDC_ISSUER=http://127.0.0.1:$OIDC_PORT
OIDC_CLIENT_ID=streamspace-ui-test
OIDC_SECRET=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
OIDC_PID=
OIDC_ADMIN=ui-$RUN_ID-ada
OIDC_USER=ui-$RUN_ID-ben
OIDC_OUTSIDER=ui-$RUN_ID-cy
OIDC_TEAM=ui-$RUN_ID-team
# shellcheck source=scripts/lib/server-url.sh
source scripts/lib/server-url.sh
# shellcheck source=tests/ui/proxies.sh
source tests/ui/proxies.sh

cleanup() {
  local status=$?
  stop_proxies
  if [[ -n $OIDC_PID ]]; then
    kill -TERM "$OIDC_PID" 2>/dev/null || true
    wait "$OIDC_PID" 2>/dev/null || true
  fi
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
  # Belt and braces: anything of this run's test users (every test names
  # its users ui-RUN-…) and of the single sign-on tests' users.
  local ours="ui-$RUN_ID-"
  containers+=" $(docker ps -a --filter label=io.streamspace.user --format '{{.ID}} {{.Label "io.streamspace.user"}}' 2>/dev/null |
    awk -v p="$ours" 'index($2, p) == 1 { print $1 }')"
  volumes+=" $(docker volume ls --filter label=io.streamspace.user --format '{{.Name}} {{.Label "io.streamspace.user"}}' 2>/dev/null |
    awk -v p="$ours" 'index($2, p) == 1 { print $1 }')"
  for user in "$OIDC_ADMIN" "$OIDC_USER" "$OIDC_OUTSIDER"; do
    containers+=" $(docker ps -aq --filter "label=io.streamspace.user=$user" 2>/dev/null || true)"
    volumes+=" $(docker volume ls -q --filter "label=io.streamspace.user=$user" 2>/dev/null || true)"
  done
  # shellcheck disable=SC2086
  [[ -z ${containers// /} ]] || docker rm -f $containers >/dev/null 2>&1 || true
  # shellcheck disable=SC2086
  [[ -z ${volumes// /} ]] || docker volume rm -f $volumes >/dev/null 2>&1 || true
  [[ -f $WORK/server.log ]] && cp "$WORK/server.log" "$ARTIFACTS/server.log"
  [[ -f $WORK/oidc-provider.log ]] && cp "$WORK/oidc-provider.log" "$ARTIFACTS/oidc-provider.log"
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
  STREAMSPACE_OIDC_CLIENT_SECRET=$OIDC_SECRET \
  "$BINARY" up --listen 127.0.0.1:0 --data-dir "$DATA" --apps-domain "$APPS_DOMAIN" \
  --oidc-issuer "$OIDC_ISSUER" --oidc-client-id "$OIDC_CLIENT_ID" \
  --oidc-scopes "openid profile groups" --oidc-admin-group "ui-$RUN_ID-admins" \
  --oidc-provider-name "Test IdP" >"$WORK/server.log" 2>&1 &
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
# The provider starts while the server becomes healthy: it costs the other
# tests nothing.
OIDC_PORT=$OIDC_PORT OIDC_CLIENT_ID=$OIDC_CLIENT_ID OIDC_CLIENT_SECRET=$OIDC_SECRET \
  OIDC_REDIRECT_URI=$URL/api/v1/auth/oidc/callback \
  OIDC_TEST_USERS="{\"$OIDC_ADMIN\": [\"ui-$RUN_ID-admins\", \"$OIDC_TEAM\"], \"$OIDC_USER\": [\"$OIDC_TEAM\"], \"$OIDC_OUTSIDER\": []}" \
  node tests/oidc/provider.mjs >"$WORK/oidc-provider.log" 2>&1 &
OIDC_PID=$!
until curl -fsS "$URL/healthz" >/dev/null 2>&1; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    tail -n 30 "$WORK/server.log" >&2 || true
    die "streamspace exited before it was healthy"
  fi
  ((SECONDS < deadline)) || die "streamspace was not healthy within 180 s"
  sleep 0.3
done
log "server healthy"
until curl -fsS "$OIDC_ISSUER/.well-known/openid-configuration" >/dev/null 2>&1; do
  if ! kill -0 "$OIDC_PID" 2>/dev/null; then
    tail -n 30 "$WORK/oidc-provider.log" >&2 || true
    die "the OpenID Connect provider (tests/oidc/provider.mjs) exited"
  fi
  ((SECONDS < deadline)) || die "the OpenID Connect provider did not answer within 180 s"
  sleep 0.2
done
log "OpenID Connect provider at $OIDC_ISSUER"

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
  STREAMSPACE_OIDC_ADMIN_USER=$OIDC_ADMIN \
  STREAMSPACE_OIDC_PLAIN_USER=$OIDC_USER \
  STREAMSPACE_OIDC_OUTSIDER_USER=$OIDC_OUTSIDER \
  STREAMSPACE_OIDC_TEAM_GROUP=$OIDC_TEAM \
  node --test --test-concurrency=1 --test-reporter=spec "${TESTS[@]}"
log "all browser tests passed; screenshots in test-artifacts/ui/"
