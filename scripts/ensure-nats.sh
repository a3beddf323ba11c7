#!/usr/bin/env bash
# Make sure `nats-server` (NATS with JetStream) is installed: the cluster queue
# (cluster.queue: nats) and its tests need it. Installs the Debian package when
# missing and this is a root shell on Debian/Ubuntu; otherwise says what to do.
# It never starts a server.
set -euo pipefail

if command -v nats-server >/dev/null 2>&1; then
    nats-server --version
    exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "nats-server: installing the Debian package"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nats-server; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nats-server
    fi
    nats-server --version
    exit 0
fi

cat >&2 <<'MSG'
nats-server is not installed, and this script can only install it as root with apt-get.
Install it one of these ways, then run this script again:
  sudo apt-get install nats-server                 (Debian, Ubuntu)
  a release binary from https://github.com/nats-io/nats-server/releases
  docker run -p 4222:4222 nats -js                 (then set cluster.nats_url)
MSG
exit 1
