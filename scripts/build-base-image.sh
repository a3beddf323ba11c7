#!/usr/bin/env bash
# Build a Python base image from Debian packages, for hosts where no image
# registry answers. Usage: scripts/build-base-image.sh [IMAGE]   (as root)
# Needs debootstrap and a running Docker engine; takes about a minute.
set -euo pipefail

image="${1:-python:3.11-slim-bookworm}"
suite="${FAAS_DEBIAN_SUITE:-bookworm}"
mirror="${FAAS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ "$(id -u)" -ne 0 ]; then
  echo "error: debootstrap needs root; run as root or pull/build $image yourself" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null; then
  echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2
  exit 1
fi

rootfs="$(mktemp -d /tmp/faas-rootfs.XXXXXX)"
archive="$(mktemp /tmp/faas-rootfs.XXXXXX.tar)"
trap 'rm -rf "$rootfs" "$archive"' EXIT

echo "I: debootstrap $suite from $mirror into $rootfs"
debootstrap --variant=minbase --include=python3,ca-certificates "$suite" "$rootfs" "$mirror"

echo "I: trimming documentation, locales and package caches"
rm -rf "$rootfs"/usr/share/{doc,man,info,locale}/* "$rootfs"/var/cache/apt/* \
  "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*

echo "I: importing into Docker as $image"
tar -C "$rootfs" -c . >"$archive"
docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'LABEL faas.base=debootstrap' \
  --change 'CMD ["python3"]' \
  "$archive" "$image"
echo "I: built $image"
