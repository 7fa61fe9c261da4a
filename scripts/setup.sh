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

pip_install() {
    # Some machines' pip config names local wheel folders that may be absent: drop that noise.
    python -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location 'file://" || true; }
}
pip_install --upgrade pip
# torch first, from the pinned constraint, so no later step can pull a CUDA build.
pip_install -c constraints.txt torch==2.13.0
pip_install -c constraints.txt -e ".[dev,bench]"  # bench: the peers bench/ measures against

bash scripts/system_packages.sh
