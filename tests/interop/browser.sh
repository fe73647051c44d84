#!/usr/bin/env bash
# A real browser against the echo server, with permessage-deflate: headless Chromium loads the
# page of examples/echo_server.rs, which sends a greeting, a JSON text and a binary message over
# `/ws` and writes `echo ok, extensions: ...` into the page once all three came back unchanged.
# browser.py drives Chromium over its DevTools pipe and waits in real time for the page's verdict.
# A check passes when the page says so with `permessage-deflate` among the extensions the
# browser agreed to, and the server logged that it negotiated compression with that browser.
# Two checks: the server's default settings, and its cheapest (ECHO_DEFLATE=frugal: no context
# takeover either way, window bits 11 and 10).
#
#   tests/interop/browser.sh
#
# Needs Chromium (Debian's `chromium`): when it is missing and we are root with apt-get (as in
# CI), it is installed; otherwise install it yourself. Prints `browser: N passed, M failed`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
log() { printf 'tests/interop/browser.sh: %s\n' "$*" >&2; }

if ! command -v chromium >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's chromium"
    start=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq
    timeout 600 apt-get install -y -qq chromium >/dev/null
    log "installed in $((SECONDS - start)) s"
  else
    log "no chromium on PATH: install Debian's chromium package (apt-get install chromium)"
    exit 3
  fi
fi
log "$(chromium --version 2>/dev/null | head -1)"

target_dir="$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
# --all-features: the same build as the tests, so nothing is compiled again.
cargo build --locked --quiet --all-features --example echo_server
out="$target_dir/interop/browser"
mkdir -p "$out"
profile="$(mktemp -d)"
server=""
cleanup() {
  if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$profile"
}
trap cleanup EXIT

# check NAME [ECHO_DEFLATE]: one page load against a fresh echo server with those settings.
passed=0; failed=0
check() {
  local name="$1" setting="${2:-}"
  local port
  port="$(python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
  ECHO_DEFLATE="$setting" NO_COLOR=1 RUST_LOG=info "$target_dir/debug/examples/echo_server" \
    "127.0.0.1:$port" >"$out/$name.server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { log "the echo server exited:"; cat "$out/$name.server.log" >&2; exit 3; }
    sleep 0.1
  done
  # Chromium is driven over the DevTools pipe and the page is polled in real time until its check
  # settles (browser.py); a fresh profile each time.
  rm -rf "$profile"; mkdir -p "$profile"
  local rc=0
  timeout 120 python3 tests/interop/browser.py "http://127.0.0.1:$port/" "$profile" 30 \
    >"$out/$name.page.txt" 2>"$out/$name.chromium.log" || rc=$?
  [[ $rc -eq 0 ]] || { log "$name: browser.py ended with status $rc:"; tail -20 "$out/$name.chromium.log" >&2; }
  kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=""

  local page negotiated ok=1
  page="$(head -1 "$out/$name.page.txt")"
  negotiated="$(grep -m1 'session open' "$out/$name.server.log" || true)"
  echo "$name: page: ${page:-nothing}"
  echo "$name: server: ${negotiated:-no session}"
  if [[ "$page" != "echo ok, extensions: permessage-deflate"* ]]; then
    log "$name: the page did not report a compressed echo ($out/$name.chromium.log)"; ok=0
  fi
  if [[ "$negotiated" != *"deflate=Some(DeflateParams"*"Chrome/"* ]]; then
    log "$name: the server did not log permessage-deflate with Chrome ($out/$name.server.log)"; ok=0
  fi
  if (( ok )); then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}

# The defaults (context takeover, 32 KiB windows), then the cheapest settings: Chromium must
# accept an answer with both no-context-takeover parameters and window bits it did not ask for.
check default
check frugal frugal
echo "browser: $passed passed, $failed failed"
(( failed == 0 ))
