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

# - Mermaid's own parser (npm, pinned in tests/mermaid/package-lock.json) for the diagrams in the
#   snapshots (tests/it/mermaid_parse.rs); required, so a missing install fails rather than skips.
if [ ! -d tests/mermaid/node_modules/mermaid ]; then
  echo "scripts/test.sh: installing Mermaid's parser for the diagram tests" >&2
  npm ci --prefix tests/mermaid --no-audit --no-fund --silent
fi
export UPKEEP_MERMAID_PARSER=required

cargo test --locked "$@"
