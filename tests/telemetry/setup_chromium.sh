#!/usr/bin/env bash
# The report-page tests drive Debian's chromium headless; install it when it is missing (needs root and apt).
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
    command -v "$name" >/dev/null 2>&1 && exit 0
done
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (Debian package) for the browser tests ..."
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null
else
    echo "chromium is missing and cannot be installed here (needs root and apt-get): the browser tests will fail" >&2
fi
