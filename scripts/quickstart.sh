#!/usr/bin/env bash
# Sets everything up, then runs the default recipe end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
sora run recipes/sentiment.yaml --out runs/sentiment "$@"
