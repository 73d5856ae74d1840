#!/usr/bin/env bash
# Runs every test against both storage backends: SQLite + in-process stores, and
# PostgreSQL + Redis (found on their standard loopback ports, or installed and started by
# scripts/services.sh). With CI=true a backend that cannot be had fails the run. Then, in
# Debian's Chromium, the GraphiQL console (scripts/browser-test.sh) and the patient portal
# (scripts/portal-test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! services=$(scripts/services.sh env); then
  echo "test.sh: PostgreSQL and Redis could not be started; see the messages above" >&2
  exit 1
fi
eval "$services"
export TEST_DATABASE_URL TEST_REDIS_URL

# Every step runs; any failing fails the run.
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  echo "test.sh: cargo-nextest not found, using cargo test" >&2
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi

# The browser tests, in Debian's Chromium (installed on first use).
scripts/browser-test.sh || status=$?
scripts/portal-test.sh || status=$?
exit "$status"
