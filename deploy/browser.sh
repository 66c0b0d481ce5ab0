#!/usr/bin/env bash
# Makes sure the headless browser of the dashboard's browser test is installed: Debian's chromium
# package, driven by the Python playwright library (which is told to use it; no bundled browsers).
# Idempotent: does nothing when $CHROMIUM already exists. Needs root or sudo to install.
set -euo pipefail
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [[ -x "$chromium" ]]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "browser: $chromium is missing and there is no apt-get; install Chromium and set CHROMIUM=/path/to/it" >&2
  exit 1
fi
sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "browser: $chromium is missing; installing it needs root: apt-get install chromium" >&2
    exit 1
  fi
  sudo=(sudo)
fi
echo "browser: installing chromium with apt-get (once)"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium >/dev/null
if [[ ! -x "$chromium" ]]; then
  echo "browser: apt-get installed chromium, but $chromium does not exist; set CHROMIUM to its path" >&2
  exit 1
fi
echo "browser: $("$chromium" --version 2>/dev/null)"
