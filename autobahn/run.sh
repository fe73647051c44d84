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
# Environment:
#   AUTOBAHN_SERVER_CMD  server under test, with {addr} (127.0.0.1:PORT), {port} and {url}
#                        placeholders (default: the autobahn_server example, given {addr})
#   AUTOBAHN_PROFILE     cargo profile for the examples (default dev: wstest, not the build,
#                        is the bottleneck, and dev reuses the test build)
#   AUTOBAHN_VENV        where the suite is installed (default autobahn/.venv)
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
report() {  # report ROLE RC LOG: the summary line, and the failures when there are any
  local role="$1" rc="$2" file="$3"
  if [[ $rc -ne 0 ]]; then
    grep -E '^(FAIL|     )' "$file" | head -60 >&2 || true
    grep -E '^(run-|check\.py)' "$file" | tail -20 >&2 || true
    status=1
  fi
  local line
  line="$(grep -E "^$role: [0-9]+ passed, [0-9]+ failed" "$file" | tail -1 || true)"
  echo "${line:-$role: no result (status $rc; see $file)}"
}
if (( run_server )); then
  mkdir -p "$here/out/server"
  rc=0
  # shellcheck disable=SC2086 # the command is split into words on purpose
  "$here/run-server.sh" -- $server_cmd >"$here/out/server/run.log" 2>&1 || rc=$?
  report server "$rc" "$here/out/server/run.log"
fi
if (( run_client )); then
  mkdir -p "$here/out/client"
  rc=0
  "$here/run-client.sh" -- "$bin_dir/autobahn_client" '{url}' '{agent}' \
    >"$here/out/client/run.log" 2>&1 || rc=$?
  report client "$rc" "$here/out/client/run.log"
fi
exit "$status"
