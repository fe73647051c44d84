# Shared helpers for the run-*.sh scripts (sourced, not run).

log() { printf '%s: %s\n' "${script_name:-autobahn}" "$*" >&2; }

# parse_options ROLE ARG...: the options both run-*.sh scripts take (their headers list them).
# Sets port, agent, outdir, cases, excludes, timeout_s and venv, and target_cmd to the words after
# the options: the server or client to run. Needs `here` and `usage` from the caller.
parse_options() {
  local role="$1"; shift
  port=""; agent="tower-ws"; outdir="$here/out/$role"; cases=(); excludes=()
  timeout_s=1800; venv="${AUTOBAHN_VENV:-$here/.venv}"
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --port) port="$2"; shift 2 ;;
      --agent) agent="$2"; shift 2 ;;
      --out) outdir="$2"; shift 2 ;;
      --cases) cases+=("$2"); shift 2 ;;
      --exclude) excludes+=("$2"); shift 2 ;;
      --timeout) timeout_s="$2"; shift 2 ;;
      --venv) venv="$2"; shift 2 ;;
      -h|--help) usage 0 ;;
      --) shift; break ;;
      *) log "unknown option $1"; usage ;;
    esac
  done
  [[ $# -ge 1 ]] || { log "no $role command given"; usage; }
  [[ ${#cases[@]} -gt 0 ]] || cases=("*")
  target_cmd=("$@")
}

# A Python 3 for the spec writer and the checker; the venv's 2.7 will do as well.
host_python() {
  command -v python3 || echo "$venv/bin/python"
}

# A TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
  "$(host_python)" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop_pid PID: TERM, up to 5 s grace, then KILL. Only ever the PIDs these scripts started.
stop_pid() {
  local p="$1"
  kill -0 "$p" 2>/dev/null || return 0
  kill "$p" 2>/dev/null || true
  for _ in $(seq 1 25); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.2; done
  kill -9 "$p" 2>/dev/null || true
}

# write_spec TEMPLATE OUT URL AGENT REPORTS NCASES CASES... EXCLUDES...
write_spec() {
  "$(host_python)" - "$@" <<'PY'
import json, sys
tpl, out, url, agent, reports, ncases = sys.argv[1:7]
rest = sys.argv[7:]
spec = json.load(open(tpl))
if "servers" in spec:
    spec["servers"] = [{"agent": agent, "url": url}]
else:
    spec["url"] = url
spec["outdir"] = reports
spec["cases"] = rest[:int(ncases)]
spec["exclude-cases"] = rest[int(ncases):]
with open(out, "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
PY
}

# The case count wstest announces in its log ("Ok, will run N test cases"), waiting up to 5 s.
announced_cases() {
  local n=""
  for _ in $(seq 1 25); do
    n="$(sed -n 's/^Ok, will run \([0-9]*\) test cases.*/\1/p' "$1" | head -1)"
    [[ -n "$n" ]] && break
    sleep 0.2
  done
  echo "$n"
}
