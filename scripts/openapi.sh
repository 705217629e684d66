#!/usr/bin/env bash
# After an API change: regenerates the web UI's copy of the API's OpenAPI
# document, ui/openapi.json (`streamspace openapi`, built from the server's
# utoipa annotations), and the TypeScript types generated from it,
# ui/src/api-schema.ts (openapi-typescript). Commit both. Then
# `cd ui && npm run typecheck` shows where the UI no longer fits the API.
#
# `cargo test -p streamspace-cli --test openapi` fails while ui/openapi.json
# is stale; the UI build (scripts/build-ui.sh) fails while api-schema.ts is.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'openapi: %s\n' "$*" >&2; }

log "writing ui/openapi.json (cargo run -p streamspace-cli -- openapi)"
cargo run --quiet -p streamspace-cli -- openapi >ui/openapi.json.tmp
mv ui/openapi.json.tmp ui/openapi.json

cd ui
if [[ ! -x node_modules/.bin/openapi-typescript ]]; then
  log "installing the UI's dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi
log "writing ui/src/api-schema.ts"
npm run --silent api-types
