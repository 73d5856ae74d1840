#!/usr/bin/env bash
# Caregraph vs the Apollo peer, side by side. See bench/README.md.
#
#   bench/run.sh                       # full run: 100,000 patients, 3 rounds of 10 s per workload
#   bench/run.sh --patients 1000000    # more data
#   bench/run.sh --smoke               # tiny data, a few seconds per workload (CI)
#   bench/run.sh live                  # live messaging: 10,000 websockets, 500 messages/s,
#                                      # against the apollo-ws peer (bench/live.mjs; --help)
#
# Ensures PostgreSQL and Redis (scripts/services.sh), installs wrk (Debian) and oha
# (crates.io) when missing, installs the peer's npm packages, builds Caregraph in release
# mode, then hands over to bench/run.mjs, which drives both servers and prints the tables.
set -euo pipefail
cd "$(dirname "$0")/.."

LIVE=false
if [ "${1:-}" = live ]; then LIVE=true; shift; fi
if $LIVE; then PEER_DIR=${PEER_DIR:-../shared/peers/apollo-ws}; else PEER_DIR=${PEER_DIR:-../shared/peers/apollo}; fi
TOOLS=${CAREGRAPH_BENCH_TOOLS:-$HOME/.cache/caregraph-bench}

eval "$(scripts/services.sh env)"
export TEST_DATABASE_URL TEST_REDIS_URL

if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq wrk >&2
fi
if ! command -v oha >/dev/null && [ ! -x "$TOOLS/bin/oha" ]; then
  echo "bench: installing oha from crates.io into $TOOLS (once; takes a few minutes)" >&2
  cargo install --locked --quiet oha --version 1.16.0 --root "$TOOLS"
fi
export PATH="$TOOLS/bin:$PATH"

if [ ! -d "$PEER_DIR" ]; then
  echo "bench: the Apollo peer is expected in $PEER_DIR (set PEER_DIR)" >&2
  exit 1
fi
if [ ! -d "$PEER_DIR/node_modules" ]; then
  echo "bench: installing the peer's npm packages ($PEER_DIR)" >&2
  (cd "$PEER_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

cargo build --release --quiet --bin caregraph
if $LIVE; then
  if [ ! -d bench/node_modules ]; then
    echo "bench: installing the websocket client (bench/package.json)" >&2
    (cd bench && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
  # Each socket is a file descriptor in the client and in the server: 10,000 of them are
  # far past the usual soft limit of 1,024. Raise it to the hard limit (or 65,536).
  hard=$(ulimit -Hn)
  if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then ulimit -n 65536; else ulimit -n "$hard"; fi
  exec node bench/live.mjs --peer "$PEER_DIR" "$@"
fi
exec node bench/run.mjs --peer "$PEER_DIR" "$@"
