#!/usr/bin/env bash
# Debian's Chromium for the dashboard's browser test (tests/e2e/test_dashboard.py drives
# /usr/bin/chromium with Playwright; no browser is downloaded). Only the tests need it.
set -euo pipefail
# A failure warns: the rest of the suite still runs.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing chromium with apt-get (for the dashboard's browser test)"
    if ! { DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends \
        chromium >/dev/null; }; then
      echo "warning: installing chromium failed; the dashboard's browser test will fail" >&2
    fi
  else
    echo "warning: no /usr/bin/chromium; the dashboard's browser test needs Debian's chromium" >&2
  fi
fi
