# Sourced by .ci/run: a redis-server and a nats-server for the cluster tests (tests/cluster_*.rs),
# from Debian's packages when missing, each on a free loopback port with no persistence, stopped
# when .ci/run exits. Exports TOWER_WS_REDIS_URL and TOWER_WS_NATS_URL; with CI=true a cluster
# test that finds no broker fails instead of skipping.
export PATH="$PATH:/usr/sbin"
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nats-server >/dev/null || missing+=(nats-server)
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { # port: until it accepts, at most 10 s
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listening on 127.0.0.1:$1" >&2; return 1
}

brokers_dir=$(mktemp -d)
redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$brokers_dir" \
  >"$brokers_dir/redis.log" 2>&1 &
redis_pid=$!
nats_port=$(free_port)
nats-server -a 127.0.0.1 -p "$nats_port" >"$brokers_dir/nats.log" 2>&1 &
nats_pid=$!
# Under `set -e` a failing command in the trap would become the script's exit status: the
# servers die of the signal (wait answers 143), so every step is made to succeed.
trap 'kill "$redis_pid" "$nats_pid" 2>/dev/null || true; wait "$redis_pid" "$nats_pid" 2>/dev/null || true; rm -rf "$brokers_dir"' EXIT
wait_port "$redis_port"
wait_port "$nats_port"
export TOWER_WS_REDIS_URL="redis://127.0.0.1:$redis_port"
export TOWER_WS_NATS_URL="nats://127.0.0.1:$nats_port"
echo "redis-server $(redis-server --version | grep -o 'v=[0-9.]*') at $TOWER_WS_REDIS_URL, nats-server at $TOWER_WS_NATS_URL"
