#!/usr/bin/env bash
# Build the image the multi-node test cluster's nodes run (tests/cluster/node/): Docker,
# the registry and nats-server from Debian, on the project's base image. Needs the
# Debian mirror (apt runs inside the build), so scripts/test runs it before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=$(.venv/bin/python -c 'from tests.cluster.nodes import node_image_tag; print(node_image_tag())')
if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "cluster node image: $tag is up to date"
    exit 0
fi
base=$(.venv/bin/python -c 'from runtime.spec import DEFAULT_BASE_IMAGE; print(DEFAULT_BASE_IMAGE)')
echo "cluster node image: building $tag from $base (apt-get inside, about 15 s)"
docker build --quiet --build-arg "BASE=$base" -t "$tag" tests/cluster/node >/dev/null
echo "cluster node image: built $tag"
