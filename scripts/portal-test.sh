#!/usr/bin/env bash
# The patient portal and provider console (web-examples/portal) in a real browser: builds
# it (codegen from schema.graphql, type check, Vite), starts caregraph in `trusted` mode
# with the portal's own persisted-documents manifest, serving the build at /portal/, and
# runs web-examples/portal/test/ (playwright-core driving Debian's Chromium, axe-core on
# every screen). A second server with a 30-second idle timeout serves the inactivity
# sign-out. Screenshots go to $PORTAL_SCREENSHOTS (default target/portal-screenshots).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
portal=web-examples/portal
source scripts/browser-lib.sh

ensure_chromium
npm_packages "$portal"
(cd "$portal" && npm run --silent build >/dev/null)

cargo build --quiet --bin caregraph
trusted=(PERSISTED_QUERIES=trusted PERSISTED_DOCUMENTS_FILE="$root/$portal/src/gql/persisted-documents.json"
  PORTAL_DIR="$root/$portal/dist")
start_caregraph portal "${trusted[@]}"
portal_url=$server_url
start_caregraph portal-idle "${trusted[@]}" SESSION_IDLE_TIMEOUT_SECS=30
idle_url=$server_url

shots=${PORTAL_SCREENSHOTS:-$root/target/portal-screenshots}
rm -rf "$shots"
mkdir -p "$shots"
echo "portal-test.sh: screenshots in $shots" >&2
cd "$portal"
PORTAL_URL="$portal_url" IDLE_PORTAL_URL="$idle_url" CHROMIUM=/usr/bin/chromium SCREENSHOTS="$shots" \
  node --test --test-concurrency=1 --test-reporter=spec test/
