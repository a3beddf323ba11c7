#!/usr/bin/env bash
# Make sure a rootless Docker daemon answers next to the rootful one, for the
# "published" replica access (the host cannot route to a rootless engine's bridge
# networks; replicas are reached through ports published on 127.0.0.1).
#
# As root on a Debian-like host: installs rootlesskit, slirp4netns and uidmap if
# missing, creates the unprivileged user faas-rootless with /etc/subuid and
# /etc/subgid ranges, starts dockerd under RootlessKit as that user (detached,
# log: /var/log/faas-rootless-dockerd.log), waits until it answers, copies the
# base image from the rootful engine when missing, and prints the socket URL
# last. Running it again reuses a daemon that answers. Root connects to the
# socket as is; other users cannot.
#
#   Usage: scripts/ensure-rootless-docker.sh [BASE_IMAGE]  (default python:3.11-slim-bookworm)
#          scripts/ensure-rootless-docker.sh --stop        (stops the daemon this started)
#   export DOCKER_HOST="$(scripts/ensure-rootless-docker.sh | tail -n 1)"
#
# Environment: FAAS_ROOTLESS_USER (faas-rootless); FAAS_ROOTLESS_PORT_RANGE
# ("20000 29999": the host ports it publishes on; Docker allocates from the
# kernel's ephemeral range, 32768-60999, which the rootful engine also uses, and
# neither knows the other's ports); FAAS_ROOTFUL_DOCKER_HOST (where to copy the
# base image from; unix:///var/run/docker.sock).
#
# Resource limits need cgroup v2 with systemd: on a cgroup v1 host, or without
# systemd, the daemon runs with cgroup driver "none" and says so in `docker info`:
# memory, CPU and pids limits are accepted but not enforced, and updating them
# on a running container fails.
set -euo pipefail

user="${FAAS_ROOTLESS_USER:-faas-rootless}"
port_range="${FAAS_ROOTLESS_PORT_RANGE:-20000 29999}"
rootful="${FAAS_ROOTFUL_DOCKER_HOST:-unix:///var/run/docker.sock}"
logfile="/var/log/faas-rootless-dockerd.log"
pidfile="/run/faas-rootless-dockerd.pid" # rootlesskit's; root-owned, so the user cannot redirect a kill
home="/var/lib/$user"
safe_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

say() { echo "rootless-docker: $*"; }
die() {
  echo "error: $*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || die "run this as root: it creates a user and starts dockerd as that user"
[ "$(uname -s)" = Linux ] || die "rootless Docker needs Linux"

our_pid() { # the rootlesskit this script started, if it is still alive
  local pid
  pid="$(cat "$pidfile" 2>/dev/null)" || return 1
  [ -n "$pid" ] && [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = rootlesskit ] && echo "$pid"
}

if [ "${1:-}" = "--stop" ]; then
  if pid="$(our_pid)"; then
    say "stopping rootless dockerd (rootlesskit pid $pid)"
    kill -TERM "$pid" # rootlesskit passes it on to dockerd, which shuts down cleanly
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -0 "$pid" 2>/dev/null && die "rootlesskit pid $pid did not exit within 30 s"
    rm -f "$pidfile"
    say "stopped"
  else
    say "not running (no live rootlesskit in $pidfile)"
  fi
  exit 0
fi

base_image="${1:-python:3.11-slim-bookworm}"
[[ "$port_range" =~ ^[0-9]+\ [0-9]+$ ]] || die "FAAS_ROOTLESS_PORT_RANGE must be two port numbers, e.g. \"20000 29999\""

max_userns="$(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo 0)"
[ "$max_userns" -gt 0 ] || die "user namespaces are disabled here (user.max_user_namespaces=$max_userns)"
if [ "$(cat /proc/sys/kernel/unprivileged_userns_clone 2>/dev/null || echo 1)" = 0 ]; then
  die "unprivileged user namespaces are disabled here (kernel.unprivileged_userns_clone=0)"
fi

# One run at a time; the lock's descriptor is closed for the daemon, which would hold it.
mkdir -p /run/lock
exec 9>/run/lock/faas-rootless-docker.lock
flock -w 300 9 || die "another ensure-rootless-docker.sh has held the lock for 5 minutes"

need_packages=()
command -v dockerd >/dev/null || need_packages+=(docker.io)
command -v rootlesskit >/dev/null || need_packages+=(rootlesskit)
command -v slirp4netns >/dev/null || need_packages+=(slirp4netns)
{ command -v newuidmap && command -v newgidmap; } >/dev/null || need_packages+=(uidmap)
command -v iptables >/dev/null || need_packages+=(iptables)
if [ "${#need_packages[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null ||
    die "${need_packages[*]} missing and there is no apt-get; install them and run this again"
  say "installing ${need_packages[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt_out="$(apt-get install -y -qq --no-install-recommends "${need_packages[@]}" 2>&1)" ||
    die "apt-get install ${need_packages[*]} failed: $(tail -n 1 <<<"$apt_out")"
fi
command -v docker >/dev/null || die "no docker CLI on PATH (apt-get install docker.io)"

if ! id -u "$user" >/dev/null 2>&1; then
  say "creating user $user (home $home)"
  useradd --system --create-home --home-dir "$home" --shell /usr/sbin/nologin \
    --comment "faas rootless Docker" "$user"
fi
uid="$(id -u "$user")"
gid="$(id -g "$user")"
home="$(getent passwd "$user" | cut -d: -f6)"
runtime_dir="/run/user/$uid"
socket="$runtime_dir/docker.sock"
url="unix://$socket"

# 65536 subordinate ids (the replicas' 10001 must be mappable), after every range already given out.
touch /etc/subuid /etc/subgid
if ! grep -q "^$user:" /etc/subuid || ! grep -q "^$user:" /etc/subgid; then
  start="$(awk -F: 'BEGIN { end = 100000 } NF >= 3 && $2 + $3 > end { end = $2 + $3 } END { print end }' \
    /etc/subuid /etc/subgid)"
  grep -q "^$user:" /etc/subuid || echo "$user:$start:65536" >>/etc/subuid
  grep -q "^$user:" /etc/subgid || echo "$user:$start:65536" >>/etc/subgid
  say "gave $user subordinate ids $start-$((start + 65535))"
fi

as_user() {
  setpriv --reuid="$uid" --regid="$gid" --init-groups \
    env -i HOME="$home" USER="$user" LOGNAME="$user" XDG_RUNTIME_DIR="$runtime_dir" PATH="$safe_path" "$@"
}

mkdir -p "$runtime_dir"
chown "$user:" "$runtime_dir"
chmod 0700 "$runtime_dir"

answers() { DOCKER_HOST="$url" timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if answers; then
  say "rootless dockerd answers at $url"
else
  if pid="$(our_pid)"; then
    say "rootless dockerd (rootlesskit pid $pid) is running but not answering yet; waiting"
    log_offset=0
  else
    pgrep -u "$user" -x rootlesskit >/dev/null &&
      die "$user runs a rootlesskit this script did not start, and nothing answers at $url; stop it first"
    # slirp4netns opens the TUN device as $user (Debian's udev makes it 0666; this host may not).
    if [ ! -c /dev/net/tun ]; then
      mkdir -p /dev/net
      mknod -m 0666 /dev/net/tun c 10 200 || die "/dev/net/tun is missing and cannot be created"
    fi
    if ! as_user sh -c ': <>/dev/net/tun' 2>/dev/null; then
      say "making /dev/net/tun usable by unprivileged users (mode 0666, as udev does)"
      chmod 0666 /dev/net/tun
    fi
    why="$(as_user rootlesskit --net=host true 2>&1 >/dev/null | tail -n 1)" ||
      die "cannot create a user namespace as $user: ${why:-rootlesskit failed}"
    pgrep -u "$user" -x dockerd >/dev/null || rm -f "$runtime_dir/docker.pid" # left by a crash or reboot

    # As dockerd-rootless.sh, plus: Docker takes the range it publishes from inside its network namespace.
    # (one line, so that RootlessKit's log of it stays one line)
    child='echo "$FAAS_PORT_RANGE" >/proc/sys/net/ipv4/ip_local_port_range || { echo "error: cannot set ip_local_port_range to $FAAS_PORT_RANGE" >&2; exit 1; }; rm -f /run/docker /run/containerd /run/xtables.lock; exec dockerd "$@"'
    log_offset="$(stat -c %s "$logfile" 2>/dev/null || echo 0)"
    echo "==== $(date -u +%FT%TZ) ensure-rootless-docker.sh starting rootless dockerd as $user" >>"$logfile"
    say "starting rootless dockerd as $user (log: $logfile)"
    (
      cd /
      exec setsid setpriv --reuid="$uid" --regid="$gid" --init-groups \
        env -i HOME="$home" USER="$user" LOGNAME="$user" XDG_RUNTIME_DIR="$runtime_dir" \
        PATH="$safe_path" FAAS_PORT_RANGE="$port_range" \
        rootlesskit --net=slirp4netns --mtu=65520 --slirp4netns-sandbox=auto --slirp4netns-seccomp=auto \
        --disable-host-loopback --port-driver=builtin --copy-up=/etc --copy-up=/run --propagation=rslave \
        sh -c "$child" faas-rootless-dockerd
    ) >>"$logfile" 2>&1 </dev/null 9>&- &
    pid=$!
    echo "$pid" >"$pidfile"
  fi
  for _ in $(seq 1 120); do
    answers && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if ! answers; then
    this_start="$(tail -c "+$((log_offset + 1))" "$logfile")"
    # the last line that is neither progress nor RootlessKit saying that its child exited
    last="$(grep -vE '^====|level=(debug|info|warning)|child exited|parsing message from fd|error: command \[|^[[:space:]]*$' \
      <<<"$this_start" | tail -n 1 | cut -c1-300 || true)"
    kill -0 "$pid" 2>/dev/null && die "rootless dockerd (pid $pid) did not answer at $url within 60 s: ${last:-see $logfile}"
    rm -f "$pidfile"
    die "rootless dockerd exited: ${last:-see $logfile}"
  fi
  say "rootless dockerd answers at $url (rootlesskit pid $pid)"
fi

security="$(DOCKER_HOST="$url" docker info --format '{{json .SecurityOptions}}' 2>/dev/null || true)"
case "$security" in
  *name=rootless*) ;;
  *) die "the daemon at $url is not rootless (security options: ${security:-none})" ;;
esac
DOCKER_HOST="$url" docker info --format '{{range .Warnings}}{{println .}}{{end}}' 2>/dev/null |
  sed -n 's/^WARNING: /rootless-docker: warning: /p'

if DOCKER_HOST="$url" docker image inspect "$base_image" >/dev/null 2>&1; then
  say "base image $base_image is present"
elif DOCKER_HOST="$rootful" timeout 10 docker image inspect "$base_image" >/dev/null 2>&1; then
  say "copying $base_image from the rootful engine: docker save | docker load"
  DOCKER_HOST="$rootful" docker save "$base_image" | DOCKER_HOST="$url" docker load >/dev/null ||
    die "copying $base_image from $rootful failed"
  say "copied $base_image"
else
  say "$base_image is missing here and at $rootful; the platform will try to pull it"
fi

echo "$url"
