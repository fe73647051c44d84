#!/usr/bin/env bash
# Installs the Autobahn|Testsuite (wstest 25.10.1, pinned in requirements.txt) into a Python 2.7
# virtualenv. Idempotent: a second run with the same pins takes well under a second.
#
#   autobahn/install.sh [VENV]        default VENV: $AUTOBAHN_VENV or autobahn/.venv
#
# Needs CPython 2.7 (every autobahntestsuite release is Python-2-only; pyenv's 2.7.18 is found on
# its own, or set AUTOBAHN_PYTHON2), gcc and the Python headers (wsaccel is built from source),
# and PyPI. About 30 s from nothing on 2 cores. AUTOBAHN_FORCE=1 reinstalls.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$here/requirements.txt"
venv="${1:-${AUTOBAHN_VENV:-$here/.venv}}"

log() { printf 'autobahn/install.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$(dirname "$venv")"
venv="$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")"
stamp="$venv/.tower-ws-autobahn.stamp"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ "${AUTOBAHN_FORCE:-0}" != 1 && -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/wstest" ]] \
   && "$venv/bin/wstest" -a 2>/dev/null | grep -q 'AutobahnTestSuite 25.10.1'; then
  log "already installed: $venv/bin/wstest"
  exit 0
fi

find_python2() {
  if [[ -n "${AUTOBAHN_PYTHON2:-}" ]]; then echo "$AUTOBAHN_PYTHON2"; return 0; fi
  local roots=() r c
  if command -v pyenv >/dev/null 2>&1; then roots+=("$(pyenv root)"); fi
  roots+=("${PYENV_ROOT:-$HOME/.pyenv}" /root/.pyenv)
  for r in "${roots[@]}"; do
    for c in "$r/versions/2.7.18/bin/python" "$r"/versions/2.7*/bin/python; do
      [[ -x "$c" ]] && { echo "$c"; return 0; }
    done
  done
  for c in python2.7 python2; do
    command -v "$c" >/dev/null 2>&1 && { command -v "$c"; return 0; }
  done
  return 1
}
py2="$(find_python2)" || die "no CPython 2.7 found; install one with pyenv (2.7.18) or set AUTOBAHN_PYTHON2"
"$py2" -c 'import sys; assert sys.version_info[:2] == (2, 7), sys.version' \
  || die "$py2 is not Python 2.7"
command -v gcc >/dev/null 2>&1 || log "warning: no gcc; building wsaccel will fail (apt-get install -y gcc)"
log "using $("$py2" -V 2>&1) at $py2"

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_PYTHON_VERSION_WARNING=1 PYTHONWARNINGS=ignore

if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
  if [[ -e "$venv" ]]; then
    if [[ -f "$venv/pyvenv.cfg" || -d "$venv/bin" ]]; then
      log "removing unusable virtualenv $venv"; rm -rf "$venv"
    elif [[ -d "$venv" && -z "$(ls -A "$venv")" ]]; then
      rmdir "$venv"
    else
      die "$venv exists and is not a virtualenv; refusing to touch it"
    fi
  fi
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # Python 2.7 has no venv module, and pyenv's 2.7.18 no virtualenv: bootstrap the last
  # virtualenv that runs on Python 2 into a temporary directory, touching nothing global.
  vpath=""
  if ! "$py2" -c 'import virtualenv' 2>/dev/null; then
    log "bootstrapping virtualenv 20.15.1"
    timeout 600 "$py2" -m pip install -q --target "$tmp/boot" 'virtualenv==20.15.1' >&2
    vpath="$tmp/boot"
  fi
  PYTHONPATH="$vpath" timeout 300 "$py2" -m virtualenv --no-periodic-update \
    --app-data "$tmp/appdata" "$venv" >&2
fi

log "installing the pinned suite into $venv"
timeout 1200 "$venv/bin/python" -m pip install -q -r "$req" >&2
"$venv/bin/python" -m pip check >&2 || die "pip check failed"
"$venv/bin/python" -c 'import automat, twisted.application.internet, wsaccel, autobahn.websocket.protocol, autobahntestsuite.wstest' \
  || die "import smoke test failed"
"$venv/bin/wstest" -a | grep -q 'AutobahnTestSuite 25.10.1' || die "wstest -a does not report 25.10.1"
echo "$want" > "$stamp"
log "ok: $venv/bin/wstest ($("$venv/bin/wstest" -a | tr '\n' ' '))"
