#!/usr/bin/env bash
# Make sure a Docker engine answers. On Debian-like hosts as root, installs
# docker.io (and debootstrap, used to build the base image when no registry
# answers) and starts dockerd in the background; elsewhere, says what to do.
set -euo pipefail

engine_answers() { timeout 5 docker info >/dev/null 2>&1; }

need_packages=()
command -v debootstrap >/dev/null || need_packages+=(debootstrap)
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
  fi
fi

if ! engine_answers; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: dockerd is installed but not running; start it (e.g. 'sudo dockerd &')" >&2
    exit 1
  fi
  echo "docker: starting dockerd (log: /var/log/faas-dockerd.log)"
  setsid dockerd >/var/log/faas-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    engine_answers && break
    sleep 0.5
  done
  if ! engine_answers; then
    echo "error: dockerd did not come up; last lines of its log:" >&2
    tail -n 20 /var/log/faas-dockerd.log >&2
    exit 1
  fi
  echo "docker: engine is running"
fi
