#!/bin/sh
# Start a Docker engine inside this container, with the arguments given (see nodes.py).
# Docker mounts /sys and the cgroup hierarchies read-only into containers; the inner
# engine has to make cgroups and network devices of its own.
set -eu
mount -o remount,rw /sys 2>/dev/null || true
mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
for hierarchy in /sys/fs/cgroup/*; do
    # Each hierarchy is a read-only bind mount of this container's own cgroup.
    mount -o remount,bind,rw "$hierarchy" 2>/dev/null || true
done
exec dockerd --storage-driver=overlay2 "$@"
