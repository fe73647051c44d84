#!/usr/bin/env bash
# The Autobahn|Testsuite, strict, in both roles, against this crate's examples: installs the
# suite if needed, builds the examples, runs each role and prints one line per role:
#
#   server: N passed, M failed
#   client: N passed, M failed
#
#   autobahn/run.sh [both|server|client]        (default both)
#
# Details (the checker's report, wstest's and the peer's logs, the HTML/JSON reports) go to
# autobahn/out/ROLE/; a failing role also prints its failures here.
#
# The two roles run at the same time: each wstest is single-threaded Python and is the
# bottleneck (with permessage-deflate, groups 12 and 13 make each role take several minutes),
# so on two cores both roles take about as long as one.
#
# Environment:
#   AUTOBAHN_SERVER_CMD  server under test, with {addr} (127.0.0.1:PORT), {port} and {url}
#                        placeholders (default: the autobahn_server example, given {addr})
#   AUTOBAHN_PROFILE     cargo profile for the examples (default dev: wstest, not the build,
#                        is the bottleneck, and dev reuses the test build)
#   AUTOBAHN_VENV        where the suite is installed (default autobahn/.venv)
#   AUTOBAHN_SERIAL=1    run the roles one after the other
#   AUTOBAHN_TIMEOUT     limit for each role's run, in seconds (default 1800)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
script_name="run"
# shellcheck source=lib.sh
source "$here/lib.sh"

roles="${1:-both}"
case "$roles" in both|server|client) ;; *) log "usage: autobahn/run.sh [both|server|client]"; exit 2 ;; esac
profile="${AUTOBAHN_PROFILE:-dev}"
target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps \
  | "$(command -v python3 || echo python)" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
bin_dir="$target_dir/$([[ "$profile" == dev ]] && echo debug || echo "$profile")/examples"

mkdir -p "$here/out"
if ! "$here/install.sh" >"$here/out/install.log" 2>&1; then
  log "installing the suite failed:"; tail -30 "$here/out/install.log" >&2; exit 3
fi
"$(host_python)" "$here/check_test.py" >"$here/out/check_test.log" 2>&1 \
  || { log "the checker's own tests failed:"; cat "$here/out/check_test.log" >&2; exit 3; }

server_cmd="${AUTOBAHN_SERVER_CMD:-}"
run_server=0; run_client=0
[[ "$roles" == client ]] || run_server=1
[[ "$roles" == server ]] || run_client=1
examples=()
if (( run_client )); then examples+=(--example autobahn_client); fi
if (( run_server )) && [[ -z "$server_cmd" ]]; then
  if [[ -f "$root/examples/autobahn_server.rs" ]]; then
    examples+=(--example autobahn_server)
    server_cmd="$bin_dir/autobahn_server {addr}"
  else
    # The server example comes with the tower layer; until it is in the tree there is nothing
    # to run the server role against.
    echo "server: not run: examples/autobahn_server.rs is not in the tree yet"
    run_server=0
  fi
fi
if (( ${#examples[@]} )); then
  log "building ${examples[*]} ($profile)"
  (cd "$root" && cargo build --locked --profile "$profile" --all-features "${examples[@]}") \
    >"$here/out/build.log" 2>&1 || { log "build failed:"; tail -30 "$here/out/build.log" >&2; exit 3; }
fi

status=0
report() {  # report ROLE RC LOG: the run time, the summary line, and the failures if any
  local role="$1" rc="$2" file="$3"
  if [[ $rc -ne 0 ]]; then
    grep -E '^(FAIL|     )' "$file" | head -60 >&2 || true
    grep -E '^(run-|check\.py)' "$file" | tail -20 >&2 || true
    status=1
  fi
  grep -E '^behavior' "$file" | sed "s/^/$role /" || true
  grep -E '^run-(server|client): (wstest|client) finished in' "$file" | sed "s/^run-[a-z]*: /$role: /" || true
  local line
  line="$(grep -E "^$role: [0-9]+ passed, [0-9]+ failed" "$file" | tail -1 || true)"
  echo "${line:-$role: no result (status $rc; see $file)}"
}
timeout_s="${AUTOBAHN_TIMEOUT:-1800}"
children=()
# Stopping a role's script (TERM) makes it stop the server, client and wstest it started.
trap 'for p in "${children[@]+"${children[@]}"}"; do kill "$p" 2>/dev/null || true; done' EXIT
server_rc=0; client_rc=0
if (( run_server )); then
  mkdir -p "$here/out/server"
  # shellcheck disable=SC2086 # the command is split into words on purpose
  "$here/run-server.sh" --timeout "$timeout_s" -- $server_cmd >"$here/out/server/run.log" 2>&1 &
  children+=($!)
  if [[ "${AUTOBAHN_SERIAL:-0}" == 1 ]]; then wait "${children[-1]}" || server_rc=$?; fi
fi
if (( run_client )); then
  mkdir -p "$here/out/client"
  "$here/run-client.sh" --timeout "$timeout_s" -- "$bin_dir/autobahn_client" '{url}' '{agent}' \
    >"$here/out/client/run.log" 2>&1 &
  children+=($!)
fi
if (( run_server )); then
  [[ "${AUTOBAHN_SERIAL:-0}" == 1 ]] || wait "${children[0]}" || server_rc=$?
  report server "$server_rc" "$here/out/server/run.log"
fi
if (( run_client )); then
  wait "${children[-1]}" || client_rc=$?
  report client "$client_rc" "$here/out/client/run.log"
fi
children=()
exit "$status"
