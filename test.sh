#!/usr/bin/env bash
# The test suite, from a clean clone: creates .venv, installs the pinned
# requirements, runs pytest (arguments are passed on). Offline after install.
# The SSH scenario tests need an OpenSSH server binary (Debian/Ubuntu:
# `sudo apt-get install -y openssh-server`); without one they are skipped,
# unless REQUIRE_SSHD=1 (CI) makes that a failure.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
if [ ! -x /usr/sbin/sshd ] && ! command -v sshd >/dev/null 2>&1; then
  echo "note: no sshd found; SSH scenario tests will be skipped (apt-get install -y openssh-server)" >&2
fi
exec .venv/bin/python -m pytest "$@"
