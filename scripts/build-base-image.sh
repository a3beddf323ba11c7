#!/usr/bin/env bash
# Build a Python base image from Debian packages: the script faas itself runs when
# no registry answers, shipped inside the package (runtime/backends/docker/).
# Usage and settings: see that file.
exec bash "$(dirname "$0")/../runtime/backends/docker/build-base-image.sh" "$@"
