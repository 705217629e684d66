#!/usr/bin/env bash
# Prepare a Debian 12 machine for StreamSpace's run and test commands:
# Docker engine (running), PostgreSQL (running, with the test role and
# database), Chromium + chromedriver, nginx and Caddy for browser tests,
# Python venv, Node/npm, libvirt with QEMU (running) and the tools that
# build the demo VM disk (docs/VM.md).
#
# Idempotent and quick when everything is already there: apt is only touched
# (and `apt-get update` only run) when something is missing.
#
# Env:
#   STREAMSPACE_SKIP_POSTGRES=1  skip PostgreSQL (install, start, role, db)
#   STREAMSPACE_SKIP_CHROMIUM=1  skip Chromium/chromedriver and the browser
#                                tests' reverse proxies (nginx, Caddy)
#   STREAMSPACE_SKIP_VM=1        skip libvirt/QEMU (install, start) and the
#                                demo VM image's build tools (libvirt-dev stays:
#                                the binary links libvirt)
# `streamspace run` itself only needs Docker.
set -euo pipefail

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Everything below needs root (apt, dockerd, pg_ctlcluster); re-run via sudo.
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || die "run as root (sudo is not installed)"
  [[ -r "$0" ]] || die "run as root: sudo bash install-deps.sh"
  exec sudo --preserve-env=STREAMSPACE_SKIP_POSTGRES,STREAMSPACE_SKIP_CHROMIUM,STREAMSPACE_SKIP_VM bash "$0" "$@"
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found; this script targets Debian 12"
export DEBIAN_FRONTEND=noninteractive
SKIP_PG="${STREAMSPACE_SKIP_POSTGRES:-0}"
SKIP_CHROMIUM="${STREAMSPACE_SKIP_CHROMIUM:-0}"
SKIP_VM="${STREAMSPACE_SKIP_VM:-0}"
START=$SECONDS
DONE=()
# psql run as postgres warns if it cannot enter root's cwd.
cd /

have() { command -v "$1" >/dev/null 2>&1; }

# 1. Packages. Checked by command rather than by package name so that an
# equivalent install (docker-ce, NodeSource node, pyenv python) counts.
MISSING=()
{ have docker && have dockerd; } || MISSING+=(docker.io)
if [[ $SKIP_PG != 1 ]]; then
  { have pg_ctlcluster && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; } ||
    MISSING+=(postgresql)
fi
PROXIES=()
if [[ $SKIP_CHROMIUM != 1 ]]; then
  have chromium || MISSING+=(chromium)
  have chromedriver || MISSING+=(chromium-driver)
  # The browser tests run the README's reverse-proxy recipes in front of the
  # server (their own instances, on free loopback ports), over TLS made with
  # openssl, and preload a small library built with cc into Chromium.
  have nginx || PROXIES+=(nginx)
  have caddy || PROXIES+=(caddy)
  have openssl || MISSING+=(openssl)
  have cc || MISSING+=(gcc libc6-dev)
fi
MISSING+=("${PROXIES[@]}")
have python3 || MISSING+=(python3 python3-pip)
# Debian splits venv/ensurepip out of python3; tests create virtualenvs.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || MISSING+=(python3-venv)
# catalog/check.py validates the template catalog against its JSON Schema.
python3 -c 'import jsonschema, yaml' >/dev/null 2>&1 || MISSING+=(python3-jsonschema python3-yaml)
# curl and jq: the README's walk-through drives the API with them.
have curl || MISSING+=(curl)
have jq || MISSING+=(jq)
# The pull tests run a private registry (the CNCF distribution registry)
# with htpasswd authentication (htpasswd -B from apache2-utils).
have docker-registry || MISSING+=(docker-registry)
have htpasswd || MISSING+=(apache2-utils)
# The replica tests run several control planes behind a real load balancer.
have haproxy || MISSING+=(haproxy)
# The platform-health test puts a socat proxy between an agent and the
# engine's socket, then freezes and kills it.
have socat || MISSING+=(socat)
# Node.js 20 or later (the machine's): the UI build, the browser tests, and
# the OpenID Connect provider they sign in with (tests/oidc, whose npm
# packages scripts/test-ui.sh installs with `npm ci`, like tests/ui's).
have node || MISSING+=(nodejs)
have npm || MISSING+=(npm)
# docs/OPERATIONS.md, tried by crates/cli/tests/operations.rs: SQLite's
# online backup and promtool checking the alert rules and the Grafana
# dashboard's queries (pg_dump comes with postgresql; HAProxy is above).
have sqlite3 || MISSING+=(sqlite3)
have promtool || MISSING+=(prometheus)
# Virtual-machine sessions (docs/VM.md): libvirt's daemons drive QEMU
# (TCG, or KVM where the CPU allows); the agent links libvirt through the
# `virt` crate, found with pkg-config. images/vm/build.sh makes the demo
# disk without mounting anything: an initramfs (cpio, depmod), a FAT image
# (mkfs.vfat, mtools) made bootable by syslinux, converted by qemu-img;
# qemu-img also makes the sessions' overlay and home disks (ext2 inside:
# e2fsprogs to inspect them).
# The binary links libvirt whether or not this host runs VMs, so its build
# needs libvirt-dev even with STREAMSPACE_SKIP_VM.
have pkg-config || MISSING+=(pkg-config)
pkg-config --exists libvirt 2>/dev/null || MISSING+=(libvirt-dev)
if [[ $SKIP_VM != 1 ]]; then
  { have libvirtd && have virtlogd; } || MISSING+=(libvirt-daemon-system)
  have virsh || MISSING+=(libvirt-clients)
  have qemu-system-x86_64 || MISSING+=(qemu-system-x86)
  # qemu-img by command, not package: some machine images ship a newer
  # qemu-utils (backports) than bookworm's, which must stay (downgrading it
  # conflicts). --no-install-recommends keeps qemu-system-x86 from asking for
  # bookworm's; a machine without any gets bookworm's.
  have qemu-img || MISSING+=(qemu-utils)
  have syslinux || MISSING+=(syslinux)
  have mcopy || MISSING+=(mtools)
  have mkfs.vfat || MISSING+=(dosfstools)
  have mke2fs || MISSING+=(e2fsprogs)
  have cpio || MISSING+=(cpio)
  have depmod || MISSING+=(kmod)
fi

if ((${#MISSING[@]})); then
  log "installing: ${MISSING[*]}"
  apt-get update -q >/dev/null || die "apt-get update failed"
  apt-get install -y -q --no-install-recommends "${MISSING[@]}" >/tmp/streamspace-apt.log 2>&1 ||
    die "apt-get install failed, see /tmp/streamspace-apt.log: $(tail -n 3 /tmp/streamspace-apt.log)"
  DONE+=("installed ${MISSING[*]}")
  # On systemd machines the packages start their own server on port 80; the
  # tests do not use it, so one this script installed is stopped again.
  if ((${#PROXIES[@]})) && [[ -d /run/systemd/system ]] && have systemctl; then
    systemctl disable --now "${PROXIES[@]}" >/dev/null 2>&1 || true
  fi
fi

# 2. Docker engine. No systemd here, so start dockerd directly and detach it
# (setsid) so it outlives this script.
if ! docker info >/dev/null 2>&1; then
  DOCKERD_LOG=/var/log/dockerd.log
  if pgrep -x dockerd >/dev/null; then
    log "dockerd is running but not answering yet; waiting"
  else
    log "starting dockerd (log: $DOCKERD_LOG)"
    setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    DONE+=("started dockerd")
  fi
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && break
    pgrep -x dockerd >/dev/null || die "dockerd exited: $(tail -n 5 "$DOCKERD_LOG" 2>/dev/null)"
    sleep 0.5
  done
  docker info >/dev/null 2>&1 ||
    die "Docker engine not ready after 60 s: $(tail -n 5 "$DOCKERD_LOG" 2>/dev/null)"
fi

# 3. libvirt: no systemd here either, so start virtlogd (QEMU's console and
# log output goes through it: without it no domain starts) and libvirtd,
# each daemonizing itself (-d), and wait until qemu:///system answers.
if [[ $SKIP_VM != 1 ]]; then
  if ! pgrep -x virtlogd >/dev/null; then
    log "starting virtlogd"
    virtlogd -d || die "virtlogd did not start"
    DONE+=("started virtlogd")
  fi
  if ! virsh -c qemu:///system version >/dev/null 2>&1; then
    if pgrep -x libvirtd >/dev/null; then
      log "libvirtd is running but not answering yet; waiting"
    else
      log "starting libvirtd (log: /var/log/libvirt/libvirtd.log)"
      libvirtd -d || die "libvirtd did not start"
      DONE+=("started libvirtd")
    fi
    for _ in $(seq 60); do
      virsh -c qemu:///system version >/dev/null 2>&1 && break
      sleep 0.5
    done
    virsh -c qemu:///system version >/dev/null 2>&1 ||
      die "libvirtd not answering on qemu:///system after 30 s: $(tail -n 5 /var/log/libvirt/libvirtd.log 2>/dev/null)"
  fi
  # Without udev, /dev/kvm stays root-only (0600). Debian's udev rule makes it
  # root:kvm 0660, and QEMU runs as libvirt-qemu (in group kvm): do the same.
  # Otherwise libvirt finds its cached QEMU capabilities (probed with KVM) at
  # odds with a /dev/kvm its QEMU cannot open, and probes QEMU again on every
  # domain start: 4 s instead of 0.4 s.
  if [[ -c /dev/kvm ]] && getent group kvm >/dev/null &&
    [[ $(stat -c %G:%a /dev/kvm) != kvm:660 ]]; then
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
    DONE+=("/dev/kvm root:kvm 0660")
  fi
  # KVM needs /dev/kvm *and* a CPU with vmx/svm: a VM without (working)
  # nested virtualization can show the device without them, and there a KVM
  # guest dies in SeaBIOS with "KVM internal error. Suberror: 1" (checked on
  # our build machines). Otherwise QEMU's TCG: <domain type='qemu'>.
  if [[ -c /dev/kvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
    VM_ACCEL=kvm
  else
    VM_ACCEL=tcg
  fi
fi

# 4. PostgreSQL: cluster running, role + test database present.
if [[ $SKIP_PG != 1 ]]; then
  PG_VERSION="$(find /etc/postgresql -mindepth 2 -maxdepth 2 -name main -printf '%h\n' 2>/dev/null |
    xargs -r -n1 basename | sort -V | tail -n 1)"
  if [[ -z $PG_VERSION ]]; then
    # The package normally creates the cluster; some images disable that.
    PG_VERSION="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)"
    [[ -n $PG_VERSION ]] || die "no PostgreSQL server found under /usr/lib/postgresql"
    log "creating PostgreSQL $PG_VERSION cluster 'main'"
    pg_createcluster "$PG_VERSION" main >/dev/null
    DONE+=("created postgres $PG_VERSION/main")
  fi
  # Exit status 3 means "not running"; pg_ctlcluster start waits until ready.
  if ! pg_ctlcluster "$PG_VERSION" main status >/dev/null 2>&1; then
    log "starting PostgreSQL $PG_VERSION/main"
    pg_ctlcluster "$PG_VERSION" main start ||
      die "PostgreSQL did not start, see /var/log/postgresql/postgresql-$PG_VERSION-main.log"
    DONE+=("started postgres $PG_VERSION")
  fi
  PG_PORT="$(pg_conftool -s "$PG_VERSION" main show port 2>/dev/null || echo 5432)"
  # Peer auth: only the postgres OS user is superuser over the local socket.
  pgsql() { runuser -u postgres -- psql -X -q -p "$PG_PORT" -v ON_ERROR_STOP=1 -tAc "$1"; }
  if [[ -z $(pgsql "SELECT 1 FROM pg_roles WHERE rolname = 'streamspace'") ]]; then
    # CREATEDB lets tests make throwaway databases next to streamspace_test.
    pgsql "CREATE ROLE streamspace LOGIN CREATEDB PASSWORD 'streamspace'"
    DONE+=("created role streamspace")
  fi
  if [[ -z $(pgsql "SELECT 1 FROM pg_database WHERE datname = 'streamspace_test'") ]]; then
    pgsql "CREATE DATABASE streamspace_test OWNER streamspace"
    DONE+=("created database streamspace_test")
  fi
  # Check the way tests connect: TCP on loopback with the password.
  PGPASSWORD=streamspace psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U streamspace streamspace_test \
    -tAc 'SELECT 1' >/dev/null 2>&1 ||
    die "cannot log in as streamspace@127.0.0.1:$PG_PORT/streamspace_test (check pg_hba.conf)"
fi

# Docker socket access for the invoking user needs the docker group (and a
# new login); say so rather than silently changing group membership.
if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]] && ! id -nG "$SUDO_USER" | tr ' ' '\n' | grep -qx docker; then
  log "note: $SUDO_USER is not in the docker group (usermod -aG docker $SUDO_USER, then log in again)"
fi

SUMMARY="docker ok"
[[ $SKIP_PG == 1 ]] || SUMMARY+=", postgres ${PG_VERSION} on port ${PG_PORT} ok"
[[ $SKIP_CHROMIUM == 1 ]] || SUMMARY+=", chromium ok"
[[ $SKIP_VM == 1 ]] || SUMMARY+=", libvirt ok ($VM_ACCEL)"
if ((${#DONE[@]})); then
  printf -v DID '%s; ' "${DONE[@]}"
  log "${DID}${SUMMARY} ($((SECONDS - START)) s)"
else
  log "nothing to do; $SUMMARY ($((SECONDS - START)) s)"
fi
