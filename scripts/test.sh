#!/usr/bin/env bash
# Sets everything up, then runs the test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check . && ruff format --check .  # lint and format (pyproject.toml [tool.ruff])
python -m pytest -n 2 "$@"
