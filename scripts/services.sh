#!/usr/bin/env bash
# PostgreSQL and Redis for Caregraph's tests and benchmarks, on loopback only.
#
#   eval "$(scripts/services.sh env)"   # ensure both answer; print TEST_DATABASE_URL / TEST_REDIS_URL exports
#   scripts/services.sh stop            # stop only the instances this script started
#
# Uses a PostgreSQL on 127.0.0.1:5432 and a Redis on 127.0.0.1:6379 when they answer.
# Otherwise installs Debian's postgresql and redis-server if missing and starts throw-away
# instances on 127.0.0.1:55432 / 127.0.0.1:56379 with data under $CAREGRAPH_SERVICES_DIR
# (default /tmp/caregraph-services): trust auth, no Redis persistence.
# Messages go to stderr; stdout carries only the export lines.
set -euo pipefail

BASE=${CAREGRAPH_SERVICES_DIR:-/tmp/caregraph-services}
PG_PORT=55432
REDIS_PORT=56379

log() { echo "services: $*" >&2; }

pg_answers() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p "$1"; }

redis_answers() {
  local reply
  reply=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3) 2>/dev/null || true)
  [ "$reply" = "+PONG" ]
}

apt_install() {
  local missing=()
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
  command -v pg_isready >/dev/null || missing+=(postgresql-client)
  command -v redis-server >/dev/null || missing+=(redis-server)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

start_postgres() {
  local bindir data=$BASE/pg
  bindir=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
  mkdir -p "$BASE" && chmod 755 "$BASE"
  if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data" "$BASE/pg-socket"
    chown postgres:postgres "$data" "$BASE/pg-socket"
    chmod 700 "$data"
    runuser -u postgres -- "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    {
      echo "listen_addresses = '127.0.0.1'"
      echo "port = $PG_PORT"
      echo "unix_socket_directories = '$BASE/pg-socket'"
      echo "max_connections = 300"
    } >>"$data/postgresql.conf"
  fi
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  runuser -u postgres -- "$bindir/pg_ctl" -D "$data" -l "$BASE/postgres.log" -w -t 60 start >/dev/null
}

start_redis() {
  mkdir -p "$BASE/redis"
  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --pidfile "$BASE/redis.pid" \
    --dir "$BASE/redis" --logfile "$BASE/redis.log" --save '' --appendonly no >/dev/null
  for _ in $(seq 50); do redis_answers "$REDIS_PORT" && return 0; sleep 0.1; done
  log "Redis did not answer on $REDIS_PORT (see $BASE/redis.log)"
  return 1
}

cmd_env() {
  local pg redis
  if pg_answers 5432; then pg=5432
  elif pg_answers "$PG_PORT"; then pg=$PG_PORT
  else apt_install; start_postgres; pg=$PG_PORT
  fi
  if redis_answers 6379; then redis=6379
  elif redis_answers "$REDIS_PORT"; then redis=$REDIS_PORT
  else apt_install; start_redis; redis=$REDIS_PORT
  fi
  log "PostgreSQL on 127.0.0.1:$pg, Redis on 127.0.0.1:$redis"
  echo "export TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$pg/postgres"
  echo "export TEST_REDIS_URL=redis://127.0.0.1:$redis"
}

cmd_stop() {
  if [ -f "$BASE/pg/PG_VERSION" ]; then
    local bindir
    bindir=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)")
    runuser -u postgres -- "$bindir/pg_ctl" -D "$BASE/pg" -m fast -w stop >/dev/null 2>&1 || true
  fi
  if [ -f "$BASE/redis.pid" ] && kill -0 "$(cat "$BASE/redis.pid")" 2>/dev/null; then
    kill "$(cat "$BASE/redis.pid")"
  fi
  log "stopped what this script started"
}

case "${1:-}" in
  env) cmd_env ;;
  stop) cmd_stop ;;
  *) echo "usage: $0 env|stop" >&2; exit 2 ;;
esac
