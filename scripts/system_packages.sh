#!/usr/bin/env bash
# Debian packages that built-in datasets read from (see docs/data.md), and chromium, the browser the
# page test of sora serve drives through playwright (tests/deploy/test_page.py). Skipped, with a note,
# where apt-get is missing or we are not root: `sora data fetch` then names what to install.
set -uo pipefail
PACKAGES="espeak-ng dataset-fashion-mnist sword-text-kjv sword-text-sparv chromium"
missing=""
for p in $PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
    echo "note: not installing Debian packages:$missing (needs root and apt-get)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $missing >/dev/null \
    || echo "note: apt-get could not install:$missing" >&2
exit 0
