#!/usr/bin/env bash
# A throw-away PostgreSQL server for tests: trust authentication, 127.0.0.1 only, no durability.
#
#   deploy/postgres/postgres.sh install          make sure PostgreSQL's server is installed (Debian's
#                                                postgresql package, once) and print its version
#   deploy/postgres/postgres.sh start DIR PORT   create a cluster in DIR unless it has one, start it on
#                                                127.0.0.1:PORT and wait until it accepts connections
#   deploy/postgres/postgres.sh stop DIR         stop the server of DIR at once (fine when it is down)
#   deploy/postgres/postgres.sh url PORT         print the URL of the postgres database on 127.0.0.1:PORT
#
# DIR holds the cluster, the server log (DIR/server.log) and the unix socket. The superuser is
# churnwatch, without a password. fsync, synchronous_commit and full_page_writes are off: a crash
# may lose or corrupt the data, which is fine for a server that tests throw away.
#
# PostgreSQL refuses to run as root. Under root the server runs as the system user churnwatch-pg
# (created once), which then owns DIR and must be able to reach it: every parent of DIR must be
# searchable by others (a directory made under /tmp is; pytest's tmp_path under root is not).
#
# Environment:
#   PG_BINDIR          directory with initdb, pg_ctl, postgres and pg_isready (default: the newest
#                      /usr/lib/postgresql/*/bin that has them, else the ones on PATH)
#   PG_START_TIMEOUT   seconds to wait for the server to accept connections (default 60)
set -euo pipefail

db_user=churnwatch
os_user=churnwatch-pg
timeout_s="${PG_START_TIMEOUT:-60}"
bindir=""

say() { echo "postgres: $*" >&2; }

usage() {
  echo "usage: $0 install | start DIR PORT | stop DIR | url PORT" >&2
  exit 2
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

has_server() {
  [[ -x "$1/initdb" && -x "$1/pg_ctl" && -x "$1/postgres" && -x "$1/pg_isready" ]]
}

find_bindir() {
  # Prints the directory of the server binaries: PG_BINDIR, the newest Debian version, or PATH's.
  if [[ -n "${PG_BINDIR:-}" ]]; then
    has_server "$PG_BINDIR" && echo "$PG_BINDIR"
    return
  fi
  local d
  while read -r d; do
    if has_server "$d"; then
      echo "$d"
      return 0
    fi
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
  local pg_ctl
  pg_ctl="$(command -v pg_ctl)" || return 1
  d="$(dirname "$(readlink -f "$pg_ctl")")"
  has_server "$d" && echo "$d"
}

install() {
  if bindir="$(find_bindir)"; then
    return 0
  fi
  if [[ -n "${PG_BINDIR:-}" ]]; then
    say "PG_BINDIR=$PG_BINDIR lacks one of initdb, pg_ctl, postgres, pg_isready"
    exit 1
  fi
  if ! is_root; then
    say "PostgreSQL's server is not installed, and installing it needs root: apt-get install postgresql"
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    say "PostgreSQL's server is not installed and there is no apt-get; install it and set PG_BINDIR"
    exit 1
  fi
  say "installing Debian's postgresql package with apt-get (once)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update && apt-get install -y --no-install-recommends postgresql
  if ! bindir="$(find_bindir)"; then
    say "apt-get installed postgresql, but no /usr/lib/postgresql/*/bin has initdb, pg_ctl and postgres"
    exit 1
  fi
}

version() { "$bindir/postgres" --version; }

check_port() {
  [[ "$1" =~ ^[0-9]+$ ]] && (($1 > 0 && $1 < 65536)) || {
    say "PORT must be a TCP port number, not '$1'"
    exit 2
  }
}

port_taken() {
  # Something already listens on 127.0.0.1:$1.
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

ensure_os_user() {
  getent passwd "$os_user" >/dev/null && return 0
  say "creating the system user $os_user to run the server (PostgreSQL refuses to run as root)"
  # A concurrent start may have created it in the meantime.
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$os_user" ||
    getent passwd "$os_user" >/dev/null || {
    say "could not create the system user $os_user"
    exit 1
  }
}

as_server_user() {
  # Runs a server command: as churnwatch-pg under root (from /, which it can enter), else directly.
  if is_root; then
    (cd / && runuser -u "$os_user" -- "$@")
  else
    "$@"
  fi
}

running() {
  # The server of DIR is up (pg_ctl status: 0 running, 3 not running, 4 no cluster there).
  [[ -f "$1/postmaster.pid" ]] || return 1
  if is_root; then
    getent passwd "$os_user" >/dev/null || return 1
  fi
  as_server_user "$bindir/pg_ctl" status -D "$1" >/dev/null 2>&1
}

stop_server() {
  if running "$1"; then
    as_server_user "$bindir/pg_ctl" stop -D "$1" -m immediate -w >/dev/null
    return 0
  fi
  return 1
}

fail_start() {
  # $1: data directory, $2: what went wrong. Prints the log tail, stops what was started, exits.
  say "$2; last lines of $1/server.log:"
  tail -n 40 "$1/server.log" >&2 2>/dev/null || true
  stop_server "$1" || true
  exit 1
}

start() {
  [[ $# -eq 2 ]] || usage
  local dir port
  dir="$(realpath -m -- "$1")"
  port="$2"
  check_port "$port"
  # The directory goes into the server's options between single quotes.
  if [[ "$dir" == *"'"* ]]; then
    say "DIR must not contain a single quote: $dir"
    exit 2
  fi
  install
  if running "$dir"; then
    local current
    current="$(sed -n 4p "$dir/postmaster.pid")"
    if [[ "$current" == "$port" ]]; then
      say "already running in $dir"
      say "up on 127.0.0.1:$port"
      return 0
    fi
    say "the server of $dir is already running on port $current, not $port; stop it first"
    exit 1
  fi
  if port_taken "$port"; then
    say "127.0.0.1:$port is already in use by another process; choose another port"
    exit 1
  fi
  mkdir -p "$dir"
  if is_root; then
    ensure_os_user
    chown -R "$os_user:" "$dir"
    if ! as_server_user test -w "$dir" -a -x "$dir"; then
      say "$os_user cannot reach $dir: each of its parent directories must be searchable by others"
      exit 1
    fi
  fi
  if [[ ! -f "$dir/PG_VERSION" ]]; then
    local out
    if ! out="$(as_server_user "$bindir/initdb" -D "$dir" --auth=trust --username="$db_user" \
      --encoding=UTF8 --locale=C --no-sync 2>&1)"; then
      say "initdb failed in $dir:"
      echo "$out" >&2
      exit 1
    fi
  fi
  local opts="-c listen_addresses=127.0.0.1 -p $port -k '$dir'"
  opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  say "starting $(version) in $dir on 127.0.0.1:$port (log $dir/server.log)"
  local started=$SECONDS
  if ! as_server_user "$bindir/pg_ctl" start -D "$dir" -l "$dir/server.log" -o "$opts" \
    -w -t "$timeout_s" >/dev/null; then
    fail_start "$dir" "pg_ctl could not start the server (or it took over ${timeout_s}s)"
  fi
  until "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; do
    if ((SECONDS - started >= timeout_s)); then
      fail_start "$dir" "the server did not accept connections on 127.0.0.1:$port within ${timeout_s}s"
    fi
    sleep 0.2
  done
  say "up on 127.0.0.1:$port"
}

stop() {
  [[ $# -eq 1 ]] || usage
  local dir
  dir="$(realpath -m -- "$1")"
  if [[ ! -f "$dir/postmaster.pid" ]]; then
    say "not running in $dir"
    return 0
  fi
  if ! bindir="$(find_bindir)"; then
    say "no PostgreSQL server binaries to stop the server of $dir with (see PG_BINDIR)"
    exit 1
  fi
  if stop_server "$dir"; then
    say "stopped the server of $dir"
  else
    say "not running in $dir"
  fi
}

url() {
  [[ $# -eq 1 ]] || usage
  check_port "$1"
  echo "postgresql://$db_user@127.0.0.1:$1/postgres"
}

case "${1:-}" in
  install)
    [[ $# -eq 1 ]] || usage
    install
    say "$(version) in $bindir"
    ;;
  start) start "${@:2}" ;;
  stop) stop "${@:2}" ;;
  url) url "${@:2}" ;;
  *) usage ;;
esac
