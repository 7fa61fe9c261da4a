#!/usr/bin/env bash
# Sets everything up, then runs the default recipe end to end.
# runs/sentiment is this script's own folder: each run replaces the previous one (--force).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
sora run recipes/sentiment.yaml --out runs/sentiment --force "$@"
