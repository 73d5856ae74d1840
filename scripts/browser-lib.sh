# Shared by scripts/browser-test.sh and scripts/portal-test.sh (source it): Debian's
# Chromium, an npm project's packages, and caregraph servers on free loopback ports, each
# on its own fresh SQLite, stopped (with its log shown on failure) when the script exits.

# Debian's Chromium, installed with apt-get when it is missing (never skipped).
ensure_chromium() {
  if [[ ! -x /usr/bin/chromium ]]; then
    echo "$(basename "$0"): installing Debian's chromium" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
}

# `npm ci` in $1 unless node_modules is what package-lock.json pins (npm writes
# node_modules/.package-lock.json on every install: older than the lock file means stale).
npm_packages() {
  if [[ ! -f "$1/node_modules/.package-lock.json" \
    || "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ]]; then
    (cd "$1" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

browser_tmp=$(mktemp -d -t caregraph-browser-XXXXXX)
server_pids=()
server_logs=()
_browser_cleanup() {
  local status=$?
  local i
  for i in "${!server_pids[@]}"; do
    kill "${server_pids[$i]}" 2>/dev/null || true
    wait "${server_pids[$i]}" 2>/dev/null || true
    if [[ $status -ne 0 && -s "${server_logs[$i]}" ]]; then
      echo "$(basename "$0"): failed; the log of server $i:" >&2
      tail -n 40 "${server_logs[$i]}" >&2
    fi
  done
  rm -rf "$browser_tmp"
  exit "$status"
}
trap _browser_cleanup EXIT

# start_caregraph NAME [VAR=value …]: a debug caregraph (development, demo data, cheap
# password hashing) on a free port and a fresh data directory, with only these settings
# (no database, Redis or keys from the caller's environment); waits until /healthz answers
# and sets $server_url.
start_caregraph() {
  local name=$1
  shift
  local port
  port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
  local log="$browser_tmp/$name.log"
  env -u DATABASE_URL -u REDIS_URL -u CAREGRAPH_KEYS -u CAREGRAPH_KEYS_FILE -u MFA_REQUIRED_ROLES \
    -u PERSISTED_QUERIES -u PERSISTED_DOCUMENTS_FILE -u PORTAL_DIR -u SESSION_IDLE_TIMEOUT_SECS \
    APP_ENV=development GRAPHIQL=true DATA_DIR="$browser_tmp/$name-data" BIND_ADDR="127.0.0.1:$port" \
    PASSWORD_HASH_M_COST_KIB=1024 PASSWORD_HASH_T_COST=1 LOG_FORMAT=text "$@" \
    "${CARGO_TARGET_DIR:-$root/target}/debug/caregraph" serve >"$log" 2>&1 &
  local pid=$!
  server_pids+=("$pid")
  server_logs+=("$log")
  # Ready when /healthz answers (node's fetch: a fresh machine need not have curl).
  node -e '
    const [url, pid, who] = process.argv.slice(1);
    const deadline = Date.now() + 30000;
    (async () => {
      for (;;) {
        try { if ((await fetch(url)).ok) process.exit(0); } catch {}
        try { process.kill(Number(pid), 0); } catch { console.error(`${who}: caregraph exited before it was ready`); process.exit(1); }
        if (Date.now() > deadline) { console.error(`${who}: caregraph did not answer in 30 s`); process.exit(1); }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();' "http://127.0.0.1:$port/healthz" "$pid" "$(basename "$0")"
  server_url="http://127.0.0.1:$port"
}
