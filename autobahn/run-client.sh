#!/usr/bin/env bash
# Runs the Autobahn|Testsuite against a WebSocket CLIENT (wstest -m fuzzingserver), then the
# strict checker.
#
#   autobahn/run-client.sh [options] -- CLIENT_CMD [ARG ...]
#
# The fuzzing server is started on 127.0.0.1 (and only there) and stopped at the end.
# CLIENT_CMD runs once it is up: in its arguments {url} becomes ws://127.0.0.1:PORT and {agent}
# the agent name (AUTOBAHN_URL and AUTOBAHN_AGENT are set in its environment as well). It must run
# the usual loop: {url}/getCaseCount, then {url}/runCase?case=N&agent=AGENT for N = 1..count
# echoing every text and binary message, then {url}/updateReports?agent=AGENT.
#
# Options:
#   --port N          port for the fuzzing server (default: a free one)
#   --agent NAME      agent name the client sends (default tower-ws)
#   --out DIR         output directory (default autobahn/out/client): fuzzingserver.json,
#                     wstest.log, client.log, reports/ (wiped first)
#   --cases GLOB      cases to offer (repeatable; default '*')
#   --exclude GLOB    cases to leave out (repeatable)
#   --timeout SECS    limit for the client command (default 1800)
#   --venv DIR        virtualenv made by install.sh (default $AUTOBAHN_VENV or autobahn/.venv)
# Exit status: check.py's (0 pass, 1 failing cases, 2 incomplete report), or 3 when the fuzzing
# server did not start or died, or the client timed out or exited with an error.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
script_name="run-client"
# shellcheck source=lib.sh
source "$here/lib.sh"
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit "${1:-2}"; }

parse_options client "$@"
wpy="$venv/bin/python"
[[ -x "$wpy" && -x "$venv/bin/wstest" ]] || { log "no wstest in $venv; run autobahn/install.sh first"; exit 3; }
[[ -n "$port" ]] || port="$(free_port)"
if port_open "$port"; then log "port $port is already in use"; exit 3; fi

url="ws://127.0.0.1:$port"
mkdir -p "$outdir"; outdir="$(cd "$outdir" && pwd)"
rm -rf "$outdir/reports"
spec="$outdir/fuzzingserver.json"; wlog="$outdir/wstest.log"; clog="$outdir/client.log"
write_spec "$here/fuzzingserver.json" "$spec" "$url" "$agent" "$outdir/reports" \
  "${#cases[@]}" "${cases[@]}" "${excludes[@]+"${excludes[@]}"}"

spid=""; cpid=""
cleanup() {
  [[ -n "$cpid" ]] && stop_pid "$cpid"
  [[ -n "$spid" ]] && stop_pid "$spid"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wstest's fuzzingserver listens on every interface (autobahn's listenWS gets no interface);
# this shim makes it listen on 127.0.0.1 only. -u 0: no web UI (it would take port 8080).
shim='import sys
from autobahntestsuite import wstest
fuzzing = sys.modules["autobahntestsuite.fuzzing"]
listen = fuzzing.listenWS
def listen_local(factory, contextFactory=None, backlog=50, interface="127.0.0.1"):
    return listen(factory, contextFactory, backlog, interface)
fuzzing.listenWS = listen_local
sys.argv[0] = "wstest"
sys.exit(wstest.run())'
(cd "$outdir" && PYTHONUNBUFFERED=1 exec "$wpy" -c "$shim" -m fuzzingserver -s "$spec" -u 0) >"$wlog" 2>&1 &
spid=$!
deadline=$((SECONDS + 30))
until port_open "$port"; do
  if ! kill -0 "$spid" 2>/dev/null; then log "the fuzzing server exited early:"; tail -20 "$wlog" >&2; spid=""; exit 3; fi
  if (( SECONDS >= deadline )); then log "the fuzzing server is not listening on $port after 30 s"; exit 3; fi
  sleep 0.1
done
expected="$(announced_cases "$wlog")"

cmd=()
for a in "${target_cmd[@]}"; do a="${a//\{url\}/$url}"; a="${a//\{agent\}/$agent}"; cmd+=("$a"); done
log "client: ${cmd[*]} (log: $clog)"
start=$SECONDS
AUTOBAHN_URL="$url" AUTOBAHN_AGENT="$agent" timeout --kill-after=10 "$timeout_s" "${cmd[@]}" >"$clog" 2>&1 &
cpid=$!
crc=0; wait "$cpid" || crc=$?
cpid=""
log "client finished in $((SECONDS - start)) s with status $crc"
if ! kill -0 "$spid" 2>/dev/null; then log "the fuzzing server died during the run:"; tail -20 "$wlog" >&2; spid=""; exit 3; fi
stop_pid "$spid"; spid=""
if [[ $crc -ne 0 ]]; then
  log "the client failed:"; tail -20 "$clog" >&2
  exit 3
fi

rc=0
"$(host_python)" "$here/check.py" "$outdir/reports" --agent "$agent" --label client \
  ${expected:+--expect-cases "$expected"} --timings || rc=$?
exit "$rc"
