#!/usr/bin/env bash
# Make sure a Docker engine answers. On Debian-like hosts as root, installs
# docker.io (and debootstrap, used to build the base image when no registry
# answers) and starts dockerd in the background; elsewhere, says what to do.
#
# With --gvisor (or FAAS_GVISOR=1) it also installs runsc (gVisor) and registers it
# with the engine as the runtime "runsc", merged into /etc/docker/daemon.json, then
# reloads dockerd (SIGHUP) until `docker info` lists it.
set -euo pipefail

usage() { echo "usage: $0 [--gvisor]   (or FAAS_GVISOR=1 $0)"; }

gvisor="${FAAS_GVISOR:-0}"
for arg in "$@"; do
  case "$arg" in
    --gvisor) gvisor=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done
case "$gvisor" in
  1 | true | yes) gvisor=1 ;;
  0 | false | no | "") gvisor=0 ;;
  *) echo "error: FAAS_GVISOR must be 1 or 0, not '$gvisor'" >&2; exit 2 ;;
esac

DAEMON_JSON=/etc/docker/daemon.json
DOCKERD_LOG=/var/log/faas-dockerd.log

engine_answers() { timeout 5 docker info >/dev/null 2>&1; }
runsc_registered() {
  timeout 5 docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'
}

need_packages=()
command -v debootstrap >/dev/null || need_packages+=(debootstrap)
if [ "$gvisor" = 1 ] && ! command -v runsc >/dev/null; then
  need_packages+=(runsc)
fi
if engine_answers; then
  echo "docker: engine is running"
else
  command -v dockerd >/dev/null || need_packages+=(docker.io)
fi

if [ "${#need_packages[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "docker: installing ${need_packages[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
  elif ! engine_answers; then
    echo "error: no Docker engine answers and this host is not Debian-like as root." >&2
    echo "Install Docker Engine (https://docs.docker.com/engine/install/), start it," >&2
    echo "and make sure 'docker info' works for this user; then run this again." >&2
    exit 1
  elif [ "$gvisor" = 1 ] && ! command -v runsc >/dev/null; then
    echo "error: runsc (gVisor) is not installed and this host is not Debian-like as root." >&2
    echo "Install it (https://gvisor.dev/docs/user_guide/install/), then run this again." >&2
    exit 1
  fi
fi

# Registers runsc in daemon.json, keeping every other setting (and any other
# runtimeArgs of an existing runsc entry). gVisor's own network stack cannot run
# in the root network namespace, so runsc uses the one Docker sets up for the
# container (--network=host). Prints "changed" or "unchanged".
register_runsc() {
  python3 -c '
import json, os, sys

path, runsc = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        text = f.read()
except FileNotFoundError:
    text = ""
try:
    config = json.loads(text) if text.strip() else {}
except ValueError as exc:
    sys.exit(f"error: {path} is not valid JSON ({exc}); fix it and run this again")
if not isinstance(config, dict):
    sys.exit(f"error: {path} does not hold a JSON object")
runtimes = config.setdefault("runtimes", {})
if not isinstance(runtimes, dict):
    sys.exit(f"error: \"runtimes\" in {path} is not a JSON object")
before = json.dumps(runtimes.get("runsc"), sort_keys=True)
entry = dict(runtimes.get("runsc") or {})
if not (entry.get("path") and os.access(entry["path"], os.X_OK)):
    entry["path"] = runsc
args = [a for a in entry.get("runtimeArgs") or [] if not a.startswith("--network")]
entry["runtimeArgs"] = args + ["--network=host"]
runtimes["runsc"] = entry
if json.dumps(entry, sort_keys=True) == before:
    print("unchanged")
    sys.exit(0)
os.makedirs(os.path.dirname(path), exist_ok=True)
tmp = path + ".faas-tmp"
with open(tmp, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
if os.path.exists(path):
    os.chmod(tmp, os.stat(path).st_mode & 0o7777)
os.replace(tmp, path)
print("changed")
' "$DAEMON_JSON" "$(command -v runsc)"
}

# Before dockerd is started below, so that a new one reads it.
if [ "$gvisor" = 1 ] && [ "$(id -u)" -eq 0 ]; then
  registered="$(register_runsc)"
  if [ "$registered" = changed ]; then
    echo "docker: registered runtime runsc in $DAEMON_JSON"
  fi
fi

if ! engine_answers; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: dockerd is installed but not running; start it (e.g. 'sudo dockerd &')" >&2
    exit 1
  fi
  # Ports published on 127.0.0.1 (replicas of engines the host cannot route to, and
  # `--replica-access published`) through iptables rather than a userland copy in
  # docker-proxy: measured 0.72x -> 0.97x of address throughput (bench/engines.py).
  # A daemon.json that says otherwise wins (dockerd refuses a flag it also sets).
  flags=()
  grep -qs '"userland-proxy"' "$DAEMON_JSON" || flags+=(--userland-proxy=false)
  echo "docker: starting dockerd ${flags[*]} (log: $DOCKERD_LOG)"
  # from /, so that deleting the directory this ran in (a test run's clone) harms nothing
  (cd / && exec setsid dockerd "${flags[@]}" >"$DOCKERD_LOG" 2>&1 </dev/null) &
  for _ in $(seq 1 60); do
    engine_answers && break
    sleep 0.5
  done
  if ! engine_answers; then
    echo "error: dockerd did not come up; last lines of its log:" >&2
    tail -n 20 "$DOCKERD_LOG" >&2
    exit 1
  fi
  echo "docker: engine is running"
fi

if [ "$gvisor" = 1 ] && ! runsc_registered; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: the engine has no runtime runsc; registering it in $DAEMON_JSON needs root" >&2
    exit 1
  fi
  # dockerd reloads daemon.json (runtimes included) on SIGHUP.
  pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    pid="$(pgrep -xo -u 0 dockerd || true)"
  fi
  if [ -z "$pid" ]; then
    echo "error: runsc is registered in $DAEMON_JSON but no dockerd process was found" >&2
    echo "to reload; restart the Docker engine, then run this again." >&2
    exit 1
  fi
  echo "docker: reloading dockerd (pid $pid) to pick up runtime runsc"
  kill -HUP "$pid"
  for _ in $(seq 1 40); do
    runsc_registered && break
    sleep 0.25
  done
  if ! runsc_registered; then
    echo "error: dockerd did not list runtime runsc after the reload; check $DAEMON_JSON" >&2
    echo "and the engine's log (e.g. $DOCKERD_LOG)." >&2
    exit 1
  fi
fi
if [ "$gvisor" = 1 ]; then
  echo "docker: runtime runsc is available ($(runsc --version 2>/dev/null | head -n 1))"
fi
