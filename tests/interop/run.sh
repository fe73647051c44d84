#!/usr/bin/env bash
# permessage-deflate interop with Python's `websockets` (pinned in tests/interop/requirements.txt), in
# both roles: builds a virtualenv for it under target/, then runs tests/python_websockets.rs,
# whose tests `cargo test` alone lists as ignored because they need that package.
#
#   tests/interop/run.sh
#
# Needs CPython 3.11 (`python3.11` on PATH, or pyenv's; set INTEROP_PYTHON to use another) and
# PyPI the first time; later runs reuse the virtualenv (a stamp holds the requirements' hash).
# Prints cargo test's summary; the exit status is cargo's.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
log() { printf 'tests/interop/run.sh: %s\n' "$*" >&2; }

target_dir="$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
venv="$target_dir/interop/venv"
req="$root/tests/interop/requirements.txt"

find_python() {
  if [[ -n "${INTEROP_PYTHON:-}" ]]; then echo "$INTEROP_PYTHON"; return 0; fi
  local c
  for c in python3.11 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.11*/bin/python3; do
    if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
  done
  return 1
}

want="$(sha256sum "$req" | cut -d' ' -f1)"
stamp="$venv/.tower-ws-interop.stamp"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" || ! -x "$venv/bin/python" ]]; then
  py="$(find_python)" || { log "no CPython 3.11 found (set INTEROP_PYTHON)"; exit 3; }
  log "creating $venv with $("$py" -V 2>&1)"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  PIP_DISABLE_PIP_VERSION_CHECK=1 timeout 600 "$venv/bin/python" -m pip install -q -r "$req"
  echo "$want" >"$stamp"
fi
"$venv/bin/python" -c 'import websockets; print("interop: websockets", websockets.__version__)'

TOWER_WS_PYTHON="$venv/bin/python" cargo test --locked --all-features \
  --test python_websockets -- --ignored
