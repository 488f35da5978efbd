#!/usr/bin/env bash
# The main job on the bundled example, offline, with the local forge: the example becomes a
# git repository under target/example-run/repo (with a bare remote beside it), and
# `upkeep run` writes its update branches there, pushes them to the remote, and writes the PR
# bodies and the dependency dashboard under .upkeep/ in it. Run it again and nothing changes
# (idempotence); pass --fresh to start over from the bundled example.
#
# Then it closes the loop, offline: it merges the ingress-nginx PR as a maintainer would (a
# merge commit), starts a stand-in cluster on loopback (examples/fake_cluster.rs: Flux's
# documented objects; the upgrade fails with UpgradeFailed), runs `upkeep verify` against it,
# and a revert PR appears under .upkeep/prs/. A final `upkeep run` settles the other branches
# on the new main, so a second run of this script changes nothing at all.
#
# UPKEEP_EXAMPLE_DIR puts it elsewhere; UPKEEP_BIN uses an upkeep binary already built and
# UPKEEP_FAKE_CLUSTER a fake_cluster example binary already built.
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

upkeep() {
  if [ -n "${UPKEEP_BIN:-}" ]; then
    "$UPKEEP_BIN" "$@"
  else
    cargo run --release --locked --quiet -- "$@"
  fi
}

upkeep run "$out/repo" --forge local --remote "$out/remote.git" "$@"

# The loop: merge one update PR, let the stand-in cluster fail it, verify.
branch=upkeep/helmrelease-ingress-nginx-ingress-nginx
repo=(git -C "$out/repo" -c user.name="Example Maintainer" -c user.email=maintainer@example.com -c commit.gpgsign=false)
if "${repo[@]}" rev-parse -q --verify "refs/heads/$branch" >/dev/null \
  && ! "${repo[@]}" merge-base --is-ancestor "$branch" main; then
  old=$("${repo[@]}" rev-parse main)
  trailer=$("${repo[@]}" log -1 --format=%B "$branch" | grep '^Upkeep-Update: ')
  from=$(echo "$trailer" | awk '{print $3}')
  to=$(echo "$trailer" | awk '{print $5}')
  pr=$(grep -l "\"head\": \"$branch\"" "$out/repo/.upkeep/prs/"*.json)
  "${repo[@]}" merge -q --no-ff -m "Merge pull request #$(basename "$pr" .json) from example/$branch" "$branch"
  merged=$("${repo[@]}" rev-parse main)
  # The local forge learns of the merge the way GitHub would record it.
  sed -i.bak -e 's/"state": "open"/"state": "merged"/' \
    -e "s/\"closed_at\": null/\"closed_at\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\", \"merge_commit\": \"$merged\"/" "$pr"
  rm -f "$pr.bak"
  echo
  echo "merged $branch ($from -> $to) as $merged; verifying it against a stand-in cluster"
  rm -rf "$out/cluster"
  if [ -n "${UPKEEP_FAKE_CLUSTER:-}" ]; then
    "$UPKEEP_FAKE_CLUSTER" "$out/cluster" "$old" "$merged" "$from" "$to" &
  else
    cargo run --locked --quiet --example fake_cluster -- "$out/cluster" "$old" "$merged" "$from" "$to" &
  fi
  cluster=$!
  trap 'kill $cluster 2>/dev/null || true' EXIT
  for _ in $(seq 1 600); do [ -f "$out/cluster/kubeconfig" ] && break; sleep 0.5; done
  status=0
  upkeep verify "$out/repo" --forge local --remote "$out/remote.git" --kubeconfig "$out/cluster/kubeconfig" \
    --timeout 30s --soak 5s --format table || status=$?
  kill "$cluster" 2>/dev/null || true
  # 3: an update failed verification (the point of the demonstration), not a crash.
  [ "$status" -eq 0 ] || [ "$status" -eq 3 ] || exit "$status"
  echo
  upkeep run "$out/repo" --forge local --remote "$out/remote.git" "$@"
fi
echo
echo "branches:   git -C $out/repo branch --list 'upkeep/*'"
echo "PR bodies:  $out/repo/.upkeep/prs/*.md   (the revert PR is the newest)"
echo "verdicts:   git -C $out/repo notes --ref upkeep list"
echo "dashboard:  $out/repo/.upkeep/dashboard.md"
