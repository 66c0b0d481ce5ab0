#!/usr/bin/env bash
# Starts and stops churnwatch's own background processes for `make demo` / `make down`.
#
#   deploy/proc.sh start NAME CMD...   run CMD in the background, log to .local/run/NAME.log
#   deploy/proc.sh stop NAME           stop it (TERM, then KILL after 15 s)
#   deploy/proc.sh status NAME         exit 0 when it runs
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run="$repo/.local/run"
mkdir -p "$run"

alive() {
  local pidfile="$run/$1.pid"
  [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

case "${1:-}" in
  start)
    name="$2"
    shift 2
    if alive "$name"; then
      echo "$name: already running (pid $(cat "$run/$name.pid"))"
      exit 0
    fi
    setsid nohup "$@" >>"$run/$name.log" 2>&1 </dev/null &
    echo $! >"$run/$name.pid"
    echo "$name: started (pid $!, log .local/run/$name.log)"
    ;;
  stop)
    name="$2"
    if ! alive "$name"; then
      rm -f "$run/$name.pid"
      exit 0
    fi
    pid="$(cat "$run/$name.pid")"
    # setsid made the process a group leader: signal the whole group (uvicorn/faust children too).
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$run/$name.pid"
    echo "$name: stopped"
    ;;
  status)
    alive "$2"
    ;;
  *)
    echo "usage: $0 start NAME CMD... | stop NAME | status NAME" >&2
    exit 2
    ;;
esac
