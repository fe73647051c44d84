#!/usr/bin/env bash
# The Autobahn|Testsuite cases 1.* to 10.* (framing, pings, close, UTF-8, limits; no
# compression), strict, against an axum app on the `tower_ws::axum` extractor
# (examples/autobahn_axum.rs). Installs the suite if needed, builds the example, and prints
#
#   axum: N passed, M failed
#
# Details go to autobahn/out/axum/. The run takes under a minute on two cores (35 s here, plus
# the example's build, which reuses the test build: all features, like autobahn/run.sh);
# wstest is the bottleneck.
#
# Environment: AUTOBAHN_PROFILE (cargo profile, default dev), AUTOBAHN_VENV, AUTOBAHN_TIMEOUT
# (seconds, default 900), as autobahn/run.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
script_name="run-axum"
# shellcheck source=lib.sh
source "$here/lib.sh"

profile="${AUTOBAHN_PROFILE:-dev}"
target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps \
  | "$(command -v python3 || echo python)" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
bin="$target_dir/$([[ "$profile" == dev ]] && echo debug || echo "$profile")/examples/autobahn_axum"
out="$here/out/axum"
mkdir -p "$out"

if ! "$here/install.sh" >"$out/install.log" 2>&1; then
  log "installing the suite failed:"; tail -30 "$out/install.log" >&2; exit 3
fi
log "building autobahn_axum ($profile)"
(cd "$root" && cargo build --locked --profile "$profile" --all-features --example autobahn_axum) \
  >"$out/build.log" 2>&1 || { log "build failed:"; tail -30 "$out/build.log" >&2; exit 3; }

cases=()
for group in 1 2 3 4 5 6 7 8 9 10; do cases+=(--cases "$group.*"); done
rc=0
"$here/run-server.sh" --agent tower-ws-axum --out "$out" --timeout "${AUTOBAHN_TIMEOUT:-900}" \
  "${cases[@]}" -- "$bin" '{addr}' >"$out/run.log" 2>&1 || rc=$?
if [[ $rc -ne 0 ]]; then
  grep -E '^(FAIL|     )' "$out/run.log" | head -60 >&2 || true
  grep -E '^(run-|check\.py)' "$out/run.log" | tail -20 >&2 || true
fi
grep -E '^behavior' "$out/run.log" | sed 's/^/axum /' || true
grep -E '^run-server: wstest finished in' "$out/run.log" | sed 's/^run-server: /axum: /' || true
line="$(grep -E '^server: [0-9]+ passed, [0-9]+ failed' "$out/run.log" | tail -1 || true)"
if [[ -n "$line" ]]; then echo "axum: ${line#server: }"; else echo "axum: no result (status $rc; see $out/run.log)"; fi
exit "$rc"
