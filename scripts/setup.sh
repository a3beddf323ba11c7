#!/usr/bin/env bash
# Everything faas needs on this host: a virtual environment with the package
# and its test tools in .venv, and a running Docker engine. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: faas needs Python 3.11 or newer as '$python' (set PYTHON=...)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$python" -m venv .venv 2>/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      echo "setup: installing python3-venv with apt-get"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      rm -rf .venv && "$python" -m venv .venv
    else
      echo "error: '$python -m venv' failed; install your distribution's venv package" >&2
      exit 1
    fi
  fi
fi
stamp=.venv/.faas-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing faas and its test tools into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | grep -v WARNING || true
  # the distribution was called `faas` before: its editable install would shadow this one's
  if .venv/bin/python -m pip show --quiet faas >/dev/null 2>&1; then
    .venv/bin/python -m pip uninstall --quiet --yes faas 2>&1 | grep -v WARNING || true
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 | grep -v WARNING || true
  .venv/bin/python -c 'import faas.cli' || { echo "error: installing faas failed" >&2; exit 1; }
  touch "$stamp"
fi

scripts/ensure-docker.sh

scripts/ensure-cluster-tools.sh
