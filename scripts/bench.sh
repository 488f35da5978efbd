#!/usr/bin/env bash
# Benchmarks of the whole binary (issue 12 item 8, issue 13), for BENCHMARKS.md:
#
#   scripts/bench.sh              # release build, then every measurement below
#   UPKEEP=path/to/upkeep scripts/bench.sh   # measure a binary you already built
#   # the shipped build (image, release binaries): cargo build --profile dist, then
#   UPKEEP=target/dist/upkeep FAKE_CLUSTER=target/release/examples/fake_cluster scripts/bench.sh
#
# 1. `upkeep scan` with lookups over each ../shared/corpus/repos/* repository, the index
#    mirror (fixtures/mirror) served on loopback by Python's http.server (Last-Modified, so
#    a warm run revalidates with 304s), cold cache then warm: wall time, peak RSS, requests
#    and body bytes (from upkeep's own `looked up in` log line).
# 2. `upkeep scan --no-lookup` of generated repositories of 1,000 and 10,000 HelmReleases.
# 3. `upkeep verify` of one failing merge against the stand-in cluster: the time from the failure
#    to the verdict, and the API requests it took (bench_verify below).
#
# Needs: bash, python3, GNU time (/usr/bin/time). Binds 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CORPUS=${CORPUS:-$ROOT/../shared/corpus/repos}

if [ -z "${UPKEEP:-}" ]; then
  cargo build --release --locked --quiet --bin upkeep --example fake_cluster
  UPKEEP=${CARGO_TARGET_DIR:-$ROOT/target}/release/upkeep
fi
FAKE_CLUSTER=${FAKE_CLUSTER:-$(dirname "$UPKEEP")/examples/fake_cluster}
[ -x /usr/bin/time ] || { echo "scripts/bench.sh: needs GNU time at /usr/bin/time" >&2; exit 1; }

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# The mirror on a free loopback port.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$ROOT/fixtures/mirror" "$PORT" >/dev/null 2>&1 &
SERVER_PID=$!
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('$BASE/SOURCES.tsv')" 2>/dev/null && break
  sleep 0.1
done

# Every Helm repository of the mirror rewritten to it; OCI and GitHub to a path it answers 404.
CONFIG=$WORK/upkeep.yaml
{
  echo "registryRewrites:"
  tail -n +2 "$ROOT/fixtures/mirror/SOURCES.tsv" | cut -f1 | while read -r url; do
    hostpath=${url#*://}
    echo "  - {from: '$url', to: '$BASE/${hostpath%/}'}"
  done
  echo "  - {from: 'oci://', to: '$BASE/nowhere'}"
  echo "  - {from: 'https://api.github.com', to: '$BASE/nowhere'}"
} >"$CONFIG"

# One measured run: prints wall, peak RSS, requests, body bytes, 304s.
measure() {
  local log=$WORK/log
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$UPKEEP" -v "$@" >/dev/null 2>"$log" || true
  read -r wall rss <"$WORK/time"
  local line
  line=$(grep -o 'looked up in [^:]*: [0-9]* requests, [0-9]* bytes, [0-9]* not modified' "$log" | tail -1 || true)
  local req bytes nm
  req=$(echo "$line" | sed -n 's/.*: \([0-9]*\) requests.*/\1/p')
  bytes=$(echo "$line" | sed -n 's/.* \([0-9]*\) bytes.*/\1/p')
  nm=$(echo "$line" | sed -n 's/.* \([0-9]*\) not modified.*/\1/p')
  printf '| %s s | %.1f MiB | %s | %s | %s |\n' "$wall" "$(awk "BEGIN{print $rss/1024}")" "${req:--}" "${bytes:--}" "${nm:--}"
}

echo "## upkeep scan with lookups (mirror on loopback), $(date -u +%F), $(nproc) cores"
echo
echo "| repository | cache | wall | peak RSS | requests | body bytes | 304s |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for repo in "$CORPUS"/*/; do
  name=$(basename "$repo")
  cache=$WORK/cache-$name
  for label in cold warm; do
    printf '| %s | %s ' "$name" "$label"
    measure scan --format json --config "$CONFIG" --cache-dir "$cache" "$repo"
  done
done

# A generated repository of $1 HelmReleases, five to a file, each folder with a kustomization.
generate() {
  python3 - "$1" "$2" <<'EOF'
import os, sys
n, root = int(sys.argv[1]), sys.argv[2]
os.makedirs(root, exist_ok=True)
with open(os.path.join(root, "repositories.yaml"), "w") as f:
    for r in range(50):
        f.write(f"---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: repo-{r}\n  namespace: flux-system\nspec:\n  interval: 1h\n  url: https://charts-{r}.example.com\n")
for file in range(n // 5):
    d = os.path.join(root, "apps", f"ns-{file % 40}", f"app-{file}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "helmrelease.yaml"), "w") as f:
        for i in range(5):
            k = file * 5 + i
            f.write(f"---\napiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: release-{k}\nspec:\n  interval: 30m\n  chart:\n    spec:\n      chart: chart-{k}\n      version: \"1.{k % 30}.{k % 7}\"\n      sourceRef:\n        kind: HelmRepository\n        name: repo-{k % 50}\n        namespace: flux-system\n  values:\n    replicaCount: 2\n")
    with open(os.path.join(d, "kustomization.yaml"), "w") as f:
        f.write(f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: ns-{file % 40}\nresources:\n  - helmrelease.yaml\n")
EOF
}

echo
echo "## upkeep scan --no-lookup of generated repositories"
echo
echo "| repository | wall | peak RSS |"
echo "| --- | ---: | ---: |"
for n in 1000 10000; do
  generate "$n" "$WORK/gen-$n"
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$UPKEEP" scan --no-lookup --format json "$WORK/gen-$n" >/dev/null
  read -r wall rss <"$WORK/time"
  printf '| %s HelmReleases | %s s | %.1f MiB |\n' "$n" "$wall" "$(awk "BEGIN{print $rss/1024}")"
done

# The verifier (issue 12 item 8): the README's main job against the stand-in cluster
# (examples/fake_cluster.rs, the test suite's fake Kubernetes API): one upkeep merge whose
# HelmRelease upgrade fails 2 s after the cluster starts. Printed: the time from that failure
# becoming visible in the API to the verdict (the note's `decided_at`), and the API requests
# the whole verification made, by verb and resource.
bench_verify() {
  echo
  echo "## upkeep verify against the fake cluster"
  echo
  local dir=$WORK/verify
  UPKEEP_EXAMPLE_DIR=$dir UPKEEP_BIN=$UPKEEP UPKEEP_FAKE_CLUSTER=$FAKE_CLUSTER \
    scripts/example.sh --fresh >"$WORK/example.log" 2>&1 || { tail -20 "$WORK/example.log"; return 1; }
  for _ in $(seq 100); do [ -s "$dir/cluster/stats.json" ] && break; sleep 0.1; done
  local merge
  merge=$(git -C "$dir/repo" notes --ref upkeep list | awk '{print $2}' | head -1)
  git -C "$dir/repo" notes --ref upkeep show "$merge" >"$WORK/note.json"
  python3 - "$WORK/note.json" "$dir/cluster/stats.json" <<'PY'
import collections, datetime, json, re, sys
note, stats = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
decided = datetime.datetime.fromisoformat(note["decided_at"].replace("Z", "+00:00"))
latency = decided.timestamp() * 1000 - stats["failed_at_ms"]
kinds = collections.Counter()
for r in stats["requests"]:
    method, target = r.split(" ", 1)
    path = target.split("?", 1)[0]
    watch = "watch=true" in target or "watch=1" in target
    resource = re.sub(r"^/apis?/(?:[^/]+/)?v[^/]+/", "", path)
    resource = re.sub(r"namespaces/[^/]+/", "", resource).split("/")[0] or path
    kinds[(("WATCH" if watch else method), resource)] += 1
print("| figure | value |\n| --- | ---: |")
print(f"| verdict | {note['verdict']} ({note.get('action', 'none')}) |")
print(f"| failure visible → verdict decided | {latency:.0f} ms |")
print(f"| API requests for the one merge | {len(stats['requests'])} |")
for (verb, res), n in sorted(kinds.items()):
    print(f"| &nbsp;&nbsp;{verb} {res} | {n} |")
PY
}
bench_verify
