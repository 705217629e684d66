#!/usr/bin/env bash
# Builds the web UI into ui/dist, which the streamspace binary embeds at
# compile time (rebuild the binary afterwards). Idempotent and quick: npm
# installs only when node_modules is missing or older than the lock file, and
# Vite runs only when a source is newer than the last build.
set -euo pipefail
cd "$(dirname "$0")/../ui"

log() { printf 'build-ui: %s\n' "$*" >&2; }
command -v npm >/dev/null 2>&1 || {
  log "error: npm not found: run scripts/install-deps.sh (installs Node.js and npm)"
  exit 1
}

stamp=node_modules/.streamspace-installed
if [[ ! -f $stamp || package-lock.json -nt $stamp || package.json -nt $stamp ]]; then
  log "installing dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi

if [[ -f dist/index.html ]] &&
  [[ -z $(find src public index.html openapi.json vite.config.ts tsconfig.json package-lock.json \
    -newer dist/index.html -print -quit) ]]; then
  log "ui/dist is up to date"
  exit 0
fi
log "building ui/dist"
npm run --silent build
