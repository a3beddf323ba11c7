#!/usr/bin/env bash
# Make sure the tools of "Running on more than one machine" are installed:
# `nats-server` (NATS with JetStream, for cluster.queue: nats) and
# `docker-registry` (the CNCF registry, which the tests push images to).
# Installs the Debian packages when missing in a root shell with apt-get;
# otherwise says what to do. It never starts a server: the tests start their own.
set -euo pipefail

missing=()
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "cluster tools: installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    exit 0
fi

cat >&2 <<MSG
missing: ${missing[*]}; this script can only install them as root with apt-get.
Install them one of these ways, then run this script again:
  sudo apt-get install ${missing[*]}               (Debian, Ubuntu)
  nats-server: a release binary from https://github.com/nats-io/nats-server/releases
  docker-registry: https://distribution.github.io/distribution/
MSG
exit 1
