#!/usr/bin/env bash
# Real browsers on two nodes of examples/cluster_chat.rs sharing a Redis-backed room: headless
# Chromium opens the example's page on each node, the pages chat through the example's own form,
# one node is restarted with the page's button while the other page keeps talking, and the page on
# the restarted node must resume from its last position with every missed message, once, in order
# (cluster_chat.py).
#
#   tests/interop/cluster_chat.sh
#
# Uses the Redis at $TOWER_WS_REDIS_URL (.ci/brokers.sh exports it in CI); without it, starts a
# private redis-server (no persistence) on a free port. Needs Chromium (tests/interop/browser.sh
# installs it in CI). Prints `cluster chat: passed` or `cluster chat: failed`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
log() { printf 'tests/interop/cluster_chat.sh: %s\n' "$*" >&2; }
command -v chromium >/dev/null 2>&1 || { log "no chromium on PATH (apt-get install chromium)"; exit 3; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { # port pid: until it accepts, at most 20 s, or the process is gone
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

target_dir="$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
# --all-features: the same build as the tests, so nothing is compiled again.
cargo build --locked --quiet --all-features --example cluster_chat
out="$target_dir/interop/cluster_chat"
mkdir -p "$out"
profile="$(mktemp -d)"
redis="" nodes=""
cleanup() {
  for pid in $nodes $redis; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$profile"
}
trap cleanup EXIT

url="${TOWER_WS_REDIS_URL:-}"
if [[ -z "$url" ]]; then
  PATH="$PATH:/usr/sbin"
  command -v redis-server >/dev/null || { log "no TOWER_WS_REDIS_URL and no redis-server on PATH"; exit 3; }
  redis_port="$(free_port)"
  redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$profile" \
    >"$out/redis.log" 2>&1 &
  redis=$!
  wait_port "$redis_port" "$redis" || { log "redis-server did not start"; cat "$out/redis.log" >&2; exit 3; }
  url="redis://127.0.0.1:$redis_port"
fi

port_a="$(free_port)"; port_b="$(free_port)"
NO_COLOR=1 "$target_dir/debug/examples/cluster_chat" "$port_a" "$port_b" --redis "$url" \
  >"$out/nodes.log" 2>&1 &
nodes=$!
for port in "$port_a" "$port_b"; do
  wait_port "$port" "$nodes" || { log "node $port did not start:"; cat "$out/nodes.log" >&2; exit 3; }
done

rc=0
timeout 120 python3 tests/interop/cluster_chat.py "$port_a" "$port_b" "$profile" 60 \
  2>"$out/chromium.log" || rc=$?
if [[ $rc -eq 0 ]]; then
  echo "cluster chat: passed"
else
  log "cluster_chat.py ended with status $rc; nodes' log:"; tail -20 "$out/nodes.log" >&2
  echo "cluster chat: failed"
  exit 1
fi
