#!/usr/bin/env bash
# Regenerate the README's configuration reference from the config's JSON Schema
# (`upkeep config reference`), between the config-reference markers. The test
# `readme_config_reference_matches_the_schema` fails until this has been run after a config change.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/upkeep/target}"
table="$(mktemp)"
trap 'rm -f "$table"' EXIT
cargo run --quiet --locked -- config reference > "$table"
python3 - "$table" <<'PY'
import sys, re
table = open(sys.argv[1]).read()
readme = open("README.md").read()
start, end = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
if start not in readme or end not in readme:
    sys.exit("README.md has no config-reference markers")
head, rest = readme.split(start, 1)
_, tail = rest.split(end, 1)
open("README.md", "w").write(f"{head}{start}\n{table}{end}{tail}")
PY
echo "README.md: configuration reference regenerated" >&2
