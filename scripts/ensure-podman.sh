#!/usr/bin/env bash
# Make sure a Podman engine answers on its Docker-compatible API socket and holds
# the base image. On Debian-like hosts as root, installs podman (netavark network
# backend) with apt-get and starts `podman system service` in the background; run
# as another user, starts a rootless service for that user (podman must already be
# installed, the user needs /etc/subuid and /etc/subgid ranges, and a home outside
# /var/lib, which rootless bridge networks cannot see). Copies the base image from
# Docker when Podman lacks it and Docker has it. Prints the socket URL last: use it
# as DOCKER_HOST (or CONTAINER_HOST).
#   Usage: scripts/ensure-podman.sh [BASE_IMAGE]      (default python:3.11-slim-bookworm)
set -euo pipefail

base_image="${1:-python:3.11-slim-bookworm}"

if [ "$(id -u)" -eq 0 ]; then
  socket="/run/podman/podman.sock"
  logfile="/var/log/faas-podman.log"
else
  runtime_dir="${XDG_RUNTIME_DIR:-/run/user/$(id -u)}"
  if [ ! -d "$runtime_dir" ] || [ ! -w "$runtime_dir" ]; then
    runtime_dir="/tmp/faas-podman-$(id -u)"
    mkdir -p -m 0700 "$runtime_dir"
  fi
  export XDG_RUNTIME_DIR="$runtime_dir"
  socket="$runtime_dir/podman/podman.sock"
  logfile="$runtime_dir/faas-podman.log"
fi
url="unix://$socket"

service_answers() {
  [ -S "$socket" ] &&
    [ "$(curl -fsS --max-time 5 --unix-socket "$socket" http://d/_ping 2>/dev/null)" = "OK" ]
}

need_packages=()
command -v podman >/dev/null || need_packages+=(podman netavark aardvark-dns slirp4netns uidmap)
command -v curl >/dev/null || need_packages+=(curl)
# As root, the gateway keeps replicas on a Podman network from connecting to each other
# with an iptables rule (Podman ignores Docker's option for it).
if [ "$(id -u)" -eq 0 ]; then
  command -v iptables >/dev/null || need_packages+=(iptables)
fi
if [ "${#need_packages[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "podman: installing ${need_packages[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
  else
    echo "error: ${need_packages[*]} missing and this host is not Debian-like as root." >&2
    echo "Install Podman (https://podman.io/docs/installation) and curl, then run this again." >&2
    exit 1
  fi
fi

if service_answers; then
  echo "podman: service is running"
else
  if [ "$(id -u)" -ne 0 ] && ! grep -q "^$(id -un):" /etc/subuid 2>/dev/null; then
    echo "warning: $(id -un) has no range in /etc/subuid; rootless podman can map only" \
      "one uid, and replicas run as 10001 (as root: usermod --add-subuids 100000-165535" \
      "--add-subgids 100000-165535 $(id -un))" >&2
  fi
  if [ "$(id -u)" -ne 0 ] && [[ "$HOME" == /var/lib/* ]]; then
    echo "warning: HOME=$HOME is under /var/lib, which rootless bridge networks hide:" \
      "containers on them fail with \"unable to find network\"" >&2
  fi
  mkdir -p "$(dirname "$socket")"
  rm -f "$socket" # a stale socket from a service that is gone
  echo "podman: starting podman system service (log: $logfile)"
  # from /: the service and every conmon it starts keep the working directory they are
  # started in, and one that is deleted later (a test run's clone) fails every container
  # start with "write child: broken pipe" ("conmon: Failed to get working directory")
  setsid sh -c 'cd / && exec podman system service --time=0 "$1"' sh "$url" \
    >>"$logfile" 2>&1 </dev/null &
  service_pid=$!
  for _ in $(seq 1 60); do
    service_answers && break
    sleep 0.5
  done
  if ! service_answers; then
    echo "error: podman system service did not come up; last lines of its log:" >&2
    tail -n 20 "$logfile" >&2
    exit 1
  fi
  echo "podman: service is running"
  # Podman 4.3 as root fails every container that does not set nofile and nproc
  # ulimits itself ("error setting rlimit type 7"); the values cannot exceed these.
  if [ -r "/proc/$service_pid/limits" ]; then
    awk '/^Max open files/ {n=$5} /^Max processes/ {p=$4}
      END {print "podman: the service allows container ulimits up to nofile=" n " nproc=" p}' \
      "/proc/$service_pid/limits"
  fi
fi

if podman image exists "$base_image"; then
  echo "podman: base image $base_image is present"
elif command -v docker >/dev/null && timeout 10 docker image inspect "$base_image" >/dev/null 2>&1; then
  size="$(docker image inspect --format '{{.Size}}' "$base_image")"
  echo "podman: copying $base_image from Docker ($((size / 1000000)) MB): docker save | podman load"
  docker save "$base_image" | podman load 2>&1 | sed -u 's/^/podman:   /'
  if ! podman image exists "$base_image"; then
    echo "error: podman load finished but $base_image is missing" >&2
    exit 1
  fi
  echo "podman: copied $base_image"
elif command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
  echo "podman: $base_image is missing here and in Docker; the platform will pull it, or" \
    "build it from Debian packages (by hand: FAAS_ENGINE=podman scripts/build-base-image.sh)"
else
  echo "podman: $base_image is missing and no Docker answers for $(id -un) to copy it from;" \
    "the platform will pull it, or build it from Debian packages (by hand:" \
    "FAAS_ENGINE=podman scripts/build-base-image.sh, or docker save $base_image | podman load)"
fi

echo "$url"
