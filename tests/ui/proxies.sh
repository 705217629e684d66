# Reverse proxies in front of the server for tests/ui/proxy.test.mjs, sourced
# by scripts/test-ui.sh (which defines log, die, free_port and PORT, the
# server's port). Debian's nginx serves four sites over TLS with a self-signed
# certificate:
#   recipe          deploy/nginx/streamspace.conf as it is
#   upgrade-only    tests/ui/nginx/upgrade-only.conf (the README's old setup)
#   always-buffers  tests/ui/nginx/always-buffers.conf (ignores the server)
#   (and the recipe's plain-HTTP redirect)
# and Debian's Caddy serves deploy/caddy/Caddyfile. Only ports and
# certificate paths are changed in each file. start_proxies exports the
# STREAMSPACE_PROXY_* variables the tests read; stop_proxies ends both and
# keeps their logs in $ARTIFACTS.

PROXY_DIR=
NGINX_PID=
CADDY_PID=
declare -A PROXY_PORTS=()

# A site file with only its ports and certificate paths changed (each must
# have been found); prints nginx's `include` line for it.
nginx_site() { # name file
  local out=$PROXY_DIR/$1.conf
  sed -e "s#listen 443 ssl#listen 127.0.0.1:${PROXY_PORTS[$1]} ssl#" \
    -e "s#listen 80;#listen 127.0.0.1:${PROXY_PORTS[redirect]};#" \
    -e "s#127.0.0.1:8080;#127.0.0.1:$PORT;#" \
    -e "s#/etc/ssl/certs/streamspace.example.com.pem#$CERT#" \
    -e "s#/etc/ssl/private/streamspace.example.com.key#$KEY#" "$2" >"$out"
  ! grep -Eq 'listen (443|80)\b|:8080;|/etc/ssl/' "$out" ||
    die "$2: a port or certificate path was not substituted"
  printf '    include %s;\n' "$out"
}

start_nginx() {
  local temp
  {
    printf 'worker_processes 1;\npid %s/nginx.pid;\nerror_log %s/nginx-error.log info;\n' "$PROXY_DIR" "$PROXY_DIR"
    printf 'events { worker_connections 512; }\nhttp {\n    access_log %s/nginx-access.log;\n' "$PROXY_DIR"
    for temp in client_body proxy fastcgi uwsgi scgi; do
      printf '    %s_temp_path %s/%s;\n' "$temp" "$PROXY_DIR" "$temp"
    done
    nginx_site recipe deploy/nginx/streamspace.conf
    nginx_site upgrade-only tests/ui/nginx/upgrade-only.conf
    nginx_site always-buffers tests/ui/nginx/always-buffers.conf
    echo "}"
  } >"$PROXY_DIR/nginx.conf"
  "$NGINX" -t -q -p "$PROXY_DIR" -c "$PROXY_DIR/nginx.conf" || die "nginx refuses the configuration"
  "$NGINX" -p "$PROXY_DIR" -c "$PROXY_DIR/nginx.conf" -g 'daemon off;' &
  NGINX_PID=$!
}

# The Caddyfile with its site address, certificate and upstream changed, after
# global options that keep Caddy off ports 80 and 2019 and out of $HOME.
start_caddy() {
  local out=$PROXY_DIR/Caddyfile
  {
    printf '{\n\tadmin off\n\tauto_https disable_redirects\n\tstorage file_system %s/caddy\n}\n' "$PROXY_DIR"
    sed -e "s#^streamspace.example.com {#https://127.0.0.1:${PROXY_PORTS[caddy]} {#" \
      -e "s#\# tls /etc/ssl/certs/streamspace.example.com.pem /etc/ssl/private/streamspace.example.com.key#tls $CERT $KEY#" \
      -e "s#127.0.0.1:8080\$#127.0.0.1:$PORT#" deploy/caddy/Caddyfile
  } >"$out"
  ! grep -Eq 'example.com \{|:8080$|/etc/ssl/' "$out" ||
    die "deploy/caddy/Caddyfile: the address, port or certificate was not substituted"
  XDG_CONFIG_HOME=$PROXY_DIR/caddy XDG_DATA_HOME=$PROXY_DIR/caddy \
    "$CADDY" run --adapter caddyfile --config "$out" >"$PROXY_DIR/caddy.log" 2>&1 &
  CADDY_PID=$!
}

start_proxies() {
  local name deadline
  for name in recipe upgrade-only always-buffers redirect caddy; do PROXY_PORTS[$name]=$(free_port); done
  # Readable by nginx's workers (they drop root); outside $WORK, which holds
  # the server's data directory.
  PROXY_DIR=$(mktemp -d /tmp/streamspace-ui-proxies.XXXXXX)
  chmod 755 "$PROXY_DIR"
  CERT=$PROXY_DIR/cert.pem
  KEY=$PROXY_DIR/key.pem
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost' \
    -keyout "$KEY" -out "$CERT" 2>/dev/null || die "openssl could not make a certificate"
  start_nginx
  start_caddy
  for name in recipe upgrade-only always-buffers caddy; do
    deadline=$((SECONDS + 20))
    until curl -fsS --cacert "$CERT" "https://127.0.0.1:${PROXY_PORTS[$name]}/healthz" >/dev/null 2>&1; do
      kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited: $(tail -n 5 "$PROXY_DIR/nginx-error.log")"
      kill -0 "$CADDY_PID" 2>/dev/null || die "caddy exited: $(tail -n 5 "$PROXY_DIR/caddy.log")"
      ((SECONDS < deadline)) || die "the $name proxy did not answer within 20 s"
      sleep 0.2
    done
  done
  export STREAMSPACE_PROXY_RECIPE=https://127.0.0.1:${PROXY_PORTS[recipe]}
  export STREAMSPACE_PROXY_UPGRADE_ONLY=https://127.0.0.1:${PROXY_PORTS[upgrade-only]}
  export STREAMSPACE_PROXY_ALWAYS_BUFFERS=https://127.0.0.1:${PROXY_PORTS[always-buffers]}
  export STREAMSPACE_PROXY_REDIRECT=http://127.0.0.1:${PROXY_PORTS[redirect]}
  export STREAMSPACE_PROXY_CADDY=https://127.0.0.1:${PROXY_PORTS[caddy]}
  # Node trusts the certificate; Chromium trusts exactly its key.
  export NODE_EXTRA_CA_CERTS=$CERT
  STREAMSPACE_PROXY_SPKI=$(openssl x509 -in "$CERT" -pubkey -noout | openssl pkey -pubin -outform der |
    openssl dgst -sha256 -binary | base64)
  export STREAMSPACE_PROXY_SPKI
}

stop_proxies() {
  local pid
  for pid in "$NGINX_PID" "$CADDY_PID"; do
    [[ -n $pid ]] || continue
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n $PROXY_DIR ]]; then
    cp "$PROXY_DIR"/nginx-*.log "$PROXY_DIR"/caddy.log "$ARTIFACTS/" 2>/dev/null || true
    rm -rf "$PROXY_DIR"
  fi
}
