#!/usr/bin/env bash
# The test command (README). Installs what the tests need, then runs them.
# - Debian's docker-registry: the real OCI registry the lookup tests start on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker-registry >/dev/null 2>&1 && [ ! -x /usr/bin/docker-registry ]; then
  echo "scripts/test.sh: installing Debian's docker-registry for the OCI lookup tests" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
fi

cargo test --locked "$@"
