#!/usr/bin/env bash
# The main job on the bundled example, offline, with the local forge: the example becomes a
# git repository under target/example-run/repo (with a bare remote beside it), and
# `upkeep run` writes its update branches there, pushes them to the remote, and writes the PR
# bodies and the dependency dashboard under .upkeep/ in it. Run it again and nothing changes
# (idempotence); pass --fresh to start over from the bundled example.
# UPKEEP_EXAMPLE_DIR puts it elsewhere; UPKEEP_BIN uses an upkeep binary already built.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${UPKEEP_EXAMPLE_DIR:-$PWD/target/example-run}"
# Only what this script creates is ever removed, never "$out" itself.
clean() { rm -rf "$out/repo" "$out/remote.git" "$out/fixtures/mirror"; }
if [ "${1:-}" = "--fresh" ]; then clean; shift; fi

if [ ! -d "$out/repo/.git" ]; then
  command -v git >/dev/null || { echo "scripts/example.sh: needs git to set up the example repository" >&2; exit 1; }
  clean
  mkdir -p "$out/fixtures"
  cp -R example "$out/repo"
  # The example's upkeep.yaml reads versions from ../fixtures/mirror (relative to the repo).
  cp -R fixtures/mirror "$out/fixtures/mirror"
  git -C "$out/repo" init -q -b main
  git -C "$out/repo" add -A
  git -C "$out/repo" -c user.name="Example Maintainer" -c user.email=maintainer@example.com -c commit.gpgsign=false \
    commit -q -m "The bundled example Flux repository"
  git init -q --bare "$out/remote.git"
fi

if [ -n "${UPKEEP_BIN:-}" ]; then
  "$UPKEEP_BIN" run "$out/repo" --forge local --remote "$out/remote.git" "$@"
else
  cargo run --release --locked --quiet -- run "$out/repo" --forge local --remote "$out/remote.git" "$@"
fi
echo
echo "branches:   git -C $out/repo branch --list 'upkeep/*'"
echo "PR bodies:  $out/repo/.upkeep/prs/*.md"
echo "dashboard:  $out/repo/.upkeep/dashboard.md"
