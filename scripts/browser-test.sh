#!/usr/bin/env bash
# The provider console in a real browser: Debian's Chromium, driven by playwright-core,
# against a fresh caregraph (embedded SQLite, demo data) on a free loopback port.
# Checks that the committed bundle is what web-examples/console builds, then runs
# web-examples/console/test/ with node's test runner. Screenshot: /tmp/console.png.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
console=web-examples/console

if [[ ! -x /usr/bin/chromium ]]; then
  echo "browser-test.sh: installing Debian's chromium" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# npm writes node_modules/.package-lock.json on every install: older than the lock file
# means node_modules is not what package-lock.json pins.
if [[ ! -f "$console/node_modules/.package-lock.json" \
  || "$console/package-lock.json" -nt "$console/node_modules/.package-lock.json" ]]; then
  (cd "$console" && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd "$console" && node build.mjs --check >/dev/null)

cargo build --quiet --bin caregraph

tmp=$(mktemp -d -t caregraph-browser-XXXXXX)
server_pid=
cleanup() {
  local status=$?
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ $status -ne 0 && -s "$tmp/server.log" ]]; then
    echo "browser-test.sh: failed; the server's log:" >&2
    tail -n 40 "$tmp/server.log" >&2
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT

port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
# Only this run's settings: no database, Redis or keys from the caller's environment.
env -u DATABASE_URL -u REDIS_URL -u CAREGRAPH_KEYS -u CAREGRAPH_KEYS_FILE -u MFA_REQUIRED_ROLES \
  APP_ENV=development GRAPHIQL=true DATA_DIR="$tmp/data" BIND_ADDR="127.0.0.1:$port" \
  PASSWORD_HASH_M_COST_KIB=1024 PASSWORD_HASH_T_COST=1 LOG_FORMAT=text \
  "${CARGO_TARGET_DIR:-$root/target}/debug/caregraph" serve >"$tmp/server.log" 2>&1 &
server_pid=$!

# Ready when /healthz answers (node's fetch: a fresh machine need not have curl).
if ! node -e '
  const [url, pid] = process.argv.slice(1);
  const deadline = Date.now() + 30000;
  (async () => {
    for (;;) {
      try { if ((await fetch(url)).ok) process.exit(0); } catch {}
      try { process.kill(Number(pid), 0); } catch { console.error("browser-test.sh: caregraph exited before it was ready"); process.exit(1); }
      if (Date.now() > deadline) { console.error("browser-test.sh: caregraph did not answer in 30 s"); process.exit(1); }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();' "http://127.0.0.1:$port/healthz" "$server_pid"; then
  exit 1
fi

cd "$console"
CONSOLE_URL="http://127.0.0.1:$port" CHROMIUM=/usr/bin/chromium SCREENSHOT=/tmp/console.png \
  node --test --test-reporter=spec test/
