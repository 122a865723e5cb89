#!/usr/bin/env bash
# Both ends of empo's version ranges (docs/install.md#versions; the table is empo/versions.py): a fresh venv resolved
# to the lowest version every direct requirement in pyproject.toml allows (uv's lowest-direct resolution; pip has
# none), or to the newest the index serves; prints what it resolved, then runs the default test suite there (every
# test that runs without an extra: training, filter, dynamic sampling, rewards, resume, eval, compare, the store,
# launch plans, the packaging checks), so that a bound that lies fails CI.
#   scripts/check_version_ends.sh lowest|newest [WORKDIR] [PYTEST ARGS...]   (CI: no pytest args, the whole suite)
set -euo pipefail
end="${1:?lowest or newest}"
case "$end" in lowest) resolution=lowest-direct ;; newest) resolution=highest ;; *) echo "lowest or newest" >&2; exit 2 ;; esac
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${2:-$(mktemp -d)}"
shift $(( $# < 2 ? $# : 2 ))
mkdir -p "$work"
if [ ! -x "$work/uv/bin/uv" ]; then python3 -m venv "$work/uv" && "$work/uv/bin/pip" install -q uv; fi
uv="$work/uv/bin/uv"
"$uv" venv -q --allow-existing "$work/$end" -p python3
time "$uv" pip install -q -p "$work/$end" --resolution "$resolution" -e "$repo[dev]"
echo "$end end:"
"$uv" pip list -p "$work/$end" 2>/dev/null | grep -iE '^(torch|transformers|trl|peft|accelerate|datasets|math-verify) '
cd "$repo"
"$work/$end/bin/python" -m pytest -q -p no:cacheprovider "$@"
