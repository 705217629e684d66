# shellcheck shell=bash
# Sourced by scripts that start the control plane on `--listen 127.0.0.1:0`:
# the kernel picks a free port at bind time, so no port is guessed in
# advance and none can be taken by another process in between.

# server_url LOG PID SECONDS: waits until the process PID has written its
# startup line `StreamSpace is running at URL` to LOG (its stdout) and
# prints the URL without a trailing slash, ready for "$url/path". Same rule
# as crates/testkit's read_url: the first line with that prefix, the rest
# trimmed. Only whole lines count, so a line still being written is not
# read half-way. Fails if PID exits first or SECONDS pass.
server_url() {
  local log=$1 pid=$2 deadline=$((SECONDS + $3)) line url
  local prefix='StreamSpace is running at '
  while :; do
    url=
    if [[ -f $log ]]; then
      # `read` fails on a last line without its newline, leaving it unread.
      while IFS= read -r line; do
        if [[ $line == "$prefix"* ]]; then
          url=${line#"$prefix"}
          break
        fi
      done <"$log"
    fi
    if [[ -n $url ]]; then
      url=${url#"${url%%[![:space:]]*}"}
      url=${url%"${url##*[![:space:]]}"}
      if [[ ! $url =~ ^https?://[^/[:space:]]+(/.*)?$ ]]; then
        printf 'server_url: not a URL in the startup line: %q\n' "$url" >&2
        return 1
      fi
      printf '%s\n' "${url%/}"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# url_port URL: the port of an http(s)://host:port URL.
url_port() {
  local hostport=${1#*://}
  hostport=${hostport%%/*}
  [[ $hostport == *:* ]] || return 1
  printf '%s\n' "${hostport##*:}"
}
