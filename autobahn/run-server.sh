#!/usr/bin/env bash
# Runs the Autobahn|Testsuite against a WebSocket echo SERVER (wstest -m fuzzingclient), then the
# strict checker.
#
#   autobahn/run-server.sh [options] -- SERVER_CMD [ARG ...]
#
# SERVER_CMD is started by this script and stopped at the end. In its arguments {addr} becomes
# 127.0.0.1:PORT, {port} PORT and {url} ws://127.0.0.1:PORT; AUTOBAHN_ADDR and AUTOBAHN_PORT are
# set in its environment as well. It must echo every text and binary message.
#
# Options:
#   --port N          port for the server (default: a free one)
#   --agent NAME      agent name in the report (default tower-ws)
#   --out DIR         output directory (default autobahn/out/server): fuzzingclient.json,
#                     wstest.log, server.log, reports/ (wiped first)
#   --cases GLOB      cases to run (repeatable; default '*')
#   --exclude GLOB    cases to leave out (repeatable)
#   --timeout SECS    limit for the whole wstest run (default 1800)
#   --venv DIR        virtualenv made by install.sh (default $AUTOBAHN_VENV or autobahn/.venv)
# Exit status: check.py's (0 pass, 1 failing cases, 2 incomplete report), or 3 when the server
# did not start, died during the run, or wstest failed or timed out.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
script_name="run-server"
# shellcheck source=lib.sh
source "$here/lib.sh"
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit "${1:-2}"; }

parse_options server "$@"
wstest="$venv/bin/wstest"
[[ -x "$wstest" ]] || { log "no $wstest; run autobahn/install.sh first"; exit 3; }
[[ -n "$port" ]] || port="$(free_port)"
if port_open "$port"; then log "port $port is already in use"; exit 3; fi

addr="127.0.0.1:$port"; url="ws://$addr"
mkdir -p "$outdir"; outdir="$(cd "$outdir" && pwd)"
rm -rf "$outdir/reports"
spec="$outdir/fuzzingclient.json"; wlog="$outdir/wstest.log"; slog="$outdir/server.log"
write_spec "$here/fuzzingclient.json" "$spec" "$url" "$agent" "$outdir/reports" \
  "${#cases[@]}" "${cases[@]}" "${excludes[@]+"${excludes[@]}"}"

spid=""; wpid=""
cleanup() {
  [[ -n "$wpid" ]] && stop_pid "$wpid"
  [[ -n "$spid" ]] && stop_pid "$spid"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cmd=()
for a in "${target_cmd[@]}"; do a="${a//\{addr\}/$addr}"; a="${a//\{port\}/$port}"; a="${a//\{url\}/$url}"; cmd+=("$a"); done
log "server: ${cmd[*]} (log: $slog)"
AUTOBAHN_ADDR="$addr" AUTOBAHN_PORT="$port" "${cmd[@]}" >"$slog" 2>&1 &
spid=$!
deadline=$((SECONDS + 60))
until port_open "$port"; do
  if ! kill -0 "$spid" 2>/dev/null; then log "the server exited before listening:"; tail -20 "$slog" >&2; spid=""; exit 3; fi
  if (( SECONDS >= deadline )); then log "the server is not listening on $addr after 60 s"; exit 3; fi
  sleep 0.1
done

log "wstest -m fuzzingclient -> $url as $agent (log: $wlog)"
start=$SECONDS
(cd "$outdir" && PYTHONUNBUFFERED=1 exec timeout --kill-after=10 "$timeout_s" "$wstest" -m fuzzingclient -s "$spec") >"$wlog" 2>&1 &
wpid=$!
rc=0; wait "$wpid" || rc=$?
wpid=""
log "wstest finished in $((SECONDS - start)) s with status $rc"
if [[ $rc -eq 124 || $rc -eq 137 ]]; then log "wstest timed out after $timeout_s s"; tail -5 "$wlog" >&2; exit 3; fi
if [[ $rc -ne 0 ]]; then log "wstest failed:"; tail -20 "$wlog" >&2; exit 3; fi
# fuzzingclient exits 0 even when the server went away mid-run: look for it.
if grep -q '^Connection to .* failed' "$wlog" || ! kill -0 "$spid" 2>/dev/null; then
  log "the server could not be reached or died during the run:"
  grep '^Connection to .* failed' "$wlog" | head -3 >&2 || true
  last="$(sed -n 's/^Running test case ID \([^ ]*\) .*/\1/p' "$wlog" | tail -1)"
  [[ -z "$last" ]] || log "last case started: $last"
  tail -20 "$slog" >&2
  exit 3
fi
stop_pid "$spid"; spid=""

expected="$(announced_cases "$wlog")"
[[ -n "$expected" ]] || { log "no case count in $wlog"; exit 3; }
rc=0
"$(host_python)" "$here/check.py" "$outdir/reports" --agent "$agent" --label server \
  --expect-cases "$expected" --timings || rc=$?
exit "$rc"
