#!/usr/bin/env bash
# The test command (README): everything a test needs is set up here, then cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked "$@"
