#!/usr/bin/env bash
# The provider console in a real browser: Debian's Chromium, driven by playwright-core,
# against a fresh caregraph (embedded SQLite, demo data) on a free loopback port.
# Checks that the committed bundle is what web-examples/console builds, then runs
# web-examples/console/test/ with node's test runner. Screenshot: /tmp/console.png.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
console=web-examples/console
source scripts/browser-lib.sh

ensure_chromium
npm_packages "$console"
(cd "$console" && node build.mjs --check >/dev/null)

cargo build --quiet --bin caregraph
start_caregraph console

cd "$console"
CONSOLE_URL="$server_url" CHROMIUM=/usr/bin/chromium SCREENSHOT=/tmp/console.png \
  node --test --test-reporter=spec test/
