#!/usr/bin/env bash
# Sets up everything Sora needs in ./.venv: torch first (pinned), then the package and its
# test tools, then the Debian packages that some built-in datasets read from.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q --upgrade pip
# torch first, from the pinned constraint, so no later step can pull a CUDA build.
python -m pip install -q -c constraints.txt torch==2.13.0
python -m pip install -q -c constraints.txt -e ".[dev]"

bash scripts/system_packages.sh
