# Sourced by the scripts: make sure Redis and PostgreSQL answer on 127.0.0.1, starting them only when
# nothing answers. Never touches running services. Their programs are installed from Debian's packages
# when missing either way: the fault tests start private instances of both, to stop and restart.

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "need root (or sudo) to install $*" >&2
    return 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

answers() {  # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() {  # host port what
  for _ in $(seq 1 60); do
    answers "$1" "$2" && return 0
    sleep 0.5
  done
  echo "$3 did not start on $1:$2" >&2
  return 1
}

ensure_redis() {
  command -v redis-server >/dev/null || apt_install redis-server
  answers 127.0.0.1 6379 && return 0
  echo "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/lime-batch-redis.log
  wait_for 127.0.0.1 6379 Redis
}

ensure_postgres() {
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt_install postgresql
  fi
  answers 127.0.0.1 5432 && return 0
  local bin data=/tmp/lime-batch-postgres
  bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
  # A private cluster with trust auth for local test connections; the system's clusters stay as they are.
  if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data" && chown postgres: "$data"
    runuser -u postgres -- "$bin/initdb" -D "$data" -A trust -U postgres >/dev/null
  fi
  echo "starting PostgreSQL ($data) on 127.0.0.1:5432"
  runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
    -o "-p 5432 -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null
  wait_for 127.0.0.1 5432 PostgreSQL
}

ensure_chromium() {  # the browser test of the HTML report
  command -v chromium >/dev/null || apt_install chromium
}

ensure_pgbouncer() {  # the test of a fleet larger than PostgreSQL's max_connections
  command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || apt_install pgbouncer
}
