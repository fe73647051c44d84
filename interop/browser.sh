#!/usr/bin/env bash
# A real browser against the echo server, with permessage-deflate: headless Chromium loads the
# page of examples/echo_server.rs, which sends a greeting, a JSON text and a binary message over
# `/ws` and writes `echo ok, extensions: ...` into the page once all three came back unchanged.
# The check passes when the page says so with `permessage-deflate` among the extensions the
# browser agreed to, and the server logged that it negotiated compression with that browser.
#
#   interop/browser.sh
#
# Needs Chromium (Debian's `chromium`): when it is missing and we are root with apt-get (as in
# CI), it is installed; otherwise install it yourself. Prints `browser: N passed, M failed`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
log() { printf 'interop/browser.sh: %s\n' "$*" >&2; }

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
port="$(python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"

profile="$(mktemp -d)"
server=""
cleanup() {
  if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$profile"
}
trap cleanup EXIT

NO_COLOR=1 RUST_LOG=info "$target_dir/debug/examples/echo_server" "127.0.0.1:$port" \
  >"$out/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { log "the echo server exited:"; cat "$out/server.log" >&2; exit 3; }
  sleep 0.1
done

# The flags headless Chromium needs as root on these machines, and a fresh profile. The virtual
# time budget lets the page's socket run before the DOM is dumped.
rc=0
timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --virtual-time-budget=10000 --dump-dom "http://127.0.0.1:$port/" \
  >"$out/dom.html" 2>"$out/chromium.log" || rc=$?
[[ $rc -eq 0 ]] || { log "chromium failed with status $rc:"; tail -20 "$out/chromium.log" >&2; }

check="$(sed -n 's:.*<p id="check">\(.*\)</p>.*:\1:p' "$out/dom.html")"
state="$(sed -n 's:.*<p id="state">\(.*\)</p>.*:\1:p' "$out/dom.html")"
negotiated="$(grep -m1 'session open' "$out/server.log" || true)"
echo "page: ${check:-nothing} (${state:-no state})"
echo "server: ${negotiated:-no session}"
failed=0
if [[ "$check" != "echo ok, extensions: permessage-deflate"* ]]; then
  log "the page did not report a compressed echo (DOM in $out/dom.html)"; failed=1
fi
if [[ "$negotiated" != *"deflate=Some(DeflateParams"*"Chrome/"* ]]; then
  log "the server did not log permessage-deflate with Chrome (log in $out/server.log)"; failed=1
fi
echo "browser: $((1 - failed)) passed, $failed failed"
exit "$failed"
