#!/usr/bin/env bash
# Build a Python base image from Debian packages, for hosts where no image
# registry answers. faas runs this file from its installed package when a pull
# fails; from a checkout, scripts/build-base-image.sh runs it too.
# Usage: build-base-image.sh [IMAGE]   (as root)
# Needs debootstrap; takes about a minute. Where the image goes:
#   default                   `docker import` into the engine DOCKER_HOST names, as the
#                             docker CLI does (Podman's service too:
#                             DOCKER_HOST=unix:///run/podman/podman.sock)
#   FAAS_ENGINE=podman        `podman import` into Podman's storage (no docker CLI needed)
#   FAAS_BASE_ARCHIVE=PATH    nowhere: the root filesystem is left as a tar archive at PATH
#                             (the platform imports it through the engine's API, with the
#                             same settings as below: runtime/backends/docker/images.py)
# Where the root filesystem comes from:
#   default                   debootstrap from FAAS_DEBIAN_MIRROR (FAAS_DEBIAN_SUITE)
#   FAAS_BASE_ROOTFS=PATH     a tar archive of one made before (FAAS_BASE_ARCHIVE's output,
#                             or `docker export` of a Python image's container), for hosts
#                             that reach no Debian mirror either: no debootstrap, no root
set -euo pipefail

image="${1:-python:3.11-slim-bookworm}"
suite="${FAAS_DEBIAN_SUITE:-bookworm}"
mirror="${FAAS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
engine="${FAAS_ENGINE:-docker}"
archive_out="${FAAS_BASE_ARCHIVE:-}"
rootfs_in="${FAAS_BASE_ROOTFS:-}"

if [ -n "$rootfs_in" ]; then
  if ! [ -f "$rootfs_in" ] || ! listing="$(tar -tf "$rootfs_in" 2>/dev/null)"; then
    echo "error: FAAS_BASE_ROOTFS=$rootfs_in is not a readable tar archive" >&2
    exit 1
  fi
  if ! grep -E '^(\./)?(usr/(local/)?)?bin/python3$' >/dev/null <<<"$listing"; then
    echo "error: FAAS_BASE_ROOTFS=$rootfs_in holds no bin/python3:" \
      "not the root filesystem of a Python image" >&2
    exit 1
  fi
else
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: debootstrap needs root; run as root or pull/build $image yourself" >&2
    exit 1
  fi
  if ! command -v debootstrap >/dev/null; then
    echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2
    exit 1
  fi
fi
if [ -z "$archive_out" ]; then
  case "$engine" in
    docker | podman) ;;
    *)
      echo "error: FAAS_ENGINE=$engine: docker or podman" >&2
      exit 1
      ;;
  esac
  if ! command -v "$engine" >/dev/null; then
    echo "error: the $engine command is missing to import $image with" \
      "(FAAS_ENGINE=docker or podman chooses which)" >&2
    exit 1
  fi
fi

if [ -n "$rootfs_in" ]; then
  echo "I: root filesystem of $image from $rootfs_in"
  archive="$rootfs_in"
  if [ -n "$archive_out" ]; then
    cp "$rootfs_in" "$archive_out"
  fi
else
  rootfs="$(mktemp -d /tmp/faas-rootfs.XXXXXX)"
  archive="${archive_out:-$(mktemp /tmp/faas-rootfs.XXXXXX.tar)}"
  if [ -n "$archive_out" ]; then
    trap 'rm -rf "$rootfs"' EXIT
  else
    trap 'rm -rf "$rootfs" "$archive"' EXIT
  fi

  echo "I: debootstrap $suite from $mirror into $rootfs"
  debootstrap --variant=minbase --include=python3,ca-certificates "$suite" "$rootfs" "$mirror"

  echo "I: trimming documentation, locales and package caches"
  rm -rf "$rootfs"/usr/share/{doc,man,info,locale}/* "$rootfs"/var/cache/apt/* \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*

  # mktemp made the directory 0700, and the archive's "./" carries that mode to the
  # image's root: on some storage drivers (Podman's overlay) a replica's uid 10001
  # then cannot reach anything in it.
  chmod 755 "$rootfs"
  tar -C "$rootfs" -c . >"$archive"
fi

if [ -n "$archive_out" ]; then
  echo "I: root filesystem of $image written to $archive"
  exit 0
fi

# images.py next to this file (BASE_IMAGE_CHANGES) imports with the same.
changes=(
  --change 'ENV LANG=C.UTF-8'
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  --change 'LABEL faas.base=debootstrap'
  --change 'CMD ["python3"]'
)
if [ "$engine" = podman ]; then
  echo "I: importing into Podman as $image"
  podman import "${changes[@]}" "$archive" "$image"
else
  echo "I: importing into ${DOCKER_HOST:-the default Docker engine} as $image"
  docker import "${changes[@]}" "$archive" "$image"
fi
echo "I: built $image"
