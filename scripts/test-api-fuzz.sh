#!/usr/bin/env bash
# Fuzzes the HTTP API of a real control plane with schemathesis, driven by
# the OpenAPI document the server itself serves (GET /api/v1/openapi.json):
# no answer may be a 5xx, and every answer must match the document (status,
# content type, body schema). A panic in the server's log fails it too.
#
#   scripts/test-api-fuzz.sh BINARY
#
# BINARY is the `streamspace` binary (a debug build also catches integer
# overflow). The server runs on `--listen 127.0.0.1:0` (the kernel picks the
# port; the URL comes from its startup line) with a fresh data directory, on
# SQLite; export STREAMSPACE_DATABASE_URL to fuzz PostgreSQL.
# STREAMSPACE_FUZZ_EXAMPLES (default 100, about a minute) bounds the cases per operation and
# phase; STREAMSPACE_FUZZ_SEED replays a run.
set -euo pipefail

BIN=${1:?usage: scripts/test-api-fuzz.sh BINARY}
BIN=$(realpath "$BIN")
# shellcheck source=scripts/lib/server-url.sh
source "$(dirname "$0")/lib/server-url.sh"
VENV=/var/tmp/streamspace-venv
EXAMPLES=${STREAMSPACE_FUZZ_EXAMPLES:-100}
PASSWORD=fuzz-admin-password

log() { printf '\n==> %s\n' "$*" >&2; }

if ! "$VENV/bin/python" -c 'import schemathesis' 2>/dev/null; then
    log "installing schemathesis into $VENV"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet schemathesis
fi

work=$(mktemp -d /tmp/streamspace-fuzz.XXXXXX)
server_pid=
fuzzer_pid=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    if [ -n "$fuzzer_pid" ]; then
        kill "$fuzzer_pid" 2>/dev/null || true
        wait "$fuzzer_pid" 2>/dev/null || true
    fi
    if [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; then
        for _ in $(seq 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting $BIN server on 127.0.0.1, a port of the kernel's choice"
STREAMSPACE_ADMIN_PASSWORD=$PASSWORD STREAMSPACE_LOG=info,tower_http=warn \
    "$BIN" server --listen 127.0.0.1:0 --data-dir "$work/data" >"$work/server.log" 2>&1 &
server_pid=$!
if ! url=$(server_url "$work/server.log" "$server_pid" 60); then
    cat "$work/server.log" >&2
    if kill -0 "$server_pid" 2>/dev/null; then
        log "the server printed no 'StreamSpace is running at URL' line within 60 s (its log is above)"
    else
        log "the server exited before it printed its URL (its log is above)"
    fi
    exit 1
fi
log "server at $url"
for _ in $(seq 100); do
    curl -fs "$url/healthz" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.2
done

token=$(curl -fsS "$url/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$PASSWORD\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')

# The token goes in the config file, not on a command line others can read.
# With no agent enrolled, placing a session answers 503 ("no agent fits"),
# as documented; nothing else may answer 5xx.
cat >"$work/schemathesis.toml" <<EOF
headers = { Authorization = "Bearer $token" }

[[operations]]
include-path = "/api/v1/sessions"
include-method = "POST"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]
EOF

# Left out: WebSockets and upgrades (/vnc, the agent channels), endless
# streams (events, logs) and logout and logout-all, which would end the
# fuzzer's own login. Changing its own password needs the current one,
# which the fuzzer does not know (403, then 429 once throttled).
# The admin cannot delete or demote itself (409), so the rest is safe.
seed=()
[ -n "${STREAMSPACE_FUZZ_SEED:-}" ] && seed=(--seed "$STREAMSPACE_FUZZ_SEED")
log "schemathesis: $EXAMPLES examples per operation"
status=0
# From the scratch directory: schemathesis keeps its example database in
# the working directory. In the background, so that a signal interrupts
# the wait and the trap stops both processes.
(cd "$work" && exec "$VENV/bin/schemathesis" --config-file "$work/schemathesis.toml" run "$url/api/v1/openapi.json" \
    --url "$url" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --exclude-path-regex '^/vnc/|^/api/v1/agents/(connect|tunnels/)|^/api/v1/events$|/logs$' \
    --exclude-path /api/v1/auth/logout \
    --exclude-path /api/v1/auth/logout-all \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$EXAMPLES" \
    --request-timeout 10 \
    --no-color \
    "${seed[@]}") &
fuzzer_pid=$!
wait "$fuzzer_pid" || status=$?
fuzzer_pid=

if ! kill -0 "$server_pid" 2>/dev/null; then
    log "the server died"
    status=1
fi
if grep -q 'panicked' "$work/server.log"; then
    log "the server panicked:"
    grep -m1 -A12 'panicked' "$work/server.log" >&2
    status=1
fi
if [ "$status" -ne 0 ]; then
    log "last lines of the server's log"
    tail -n 40 "$work/server.log" >&2
    log "API fuzzing FAILED"
else
    log "API fuzzing passed"
fi
exit "$status"
