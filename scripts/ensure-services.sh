#!/usr/bin/env bash
# Make sure the integration tier's real PostgreSQL and Redis answer on 127.0.0.1, and that the browser
# tier's headless Chromium (Debian's `chromium`, driven by Playwright) is installed.
#   usage: scripts/ensure-services.sh DATABASE_URL REDIS_URL
# Uses servers already listening; starts installed-but-stopped ones; installs them with apt-get
# (Debian packages) when missing and we are root; otherwise fails with what to do.
set -euo pipefail

DATABASE_URL=${1:-postgres://supplychain:supplychain@127.0.0.1:5432/supplychain}
REDIS_URL=${2:-redis://127.0.0.1:6379/15}

say() { printf '[services] %s\n' "$*"; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# Split the URLs with Python's own parser (python3 is there: the project needs it anyway).
read -r PG_HOST PG_PORT PG_USER PG_PASSWORD PG_DB < <(python3 - "$DATABASE_URL" <<'PY'
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(p.hostname or "127.0.0.1", p.port or 5432, p.username or "postgres", p.password or "-", p.path.lstrip("/") or "postgres")
PY
)
read -r REDIS_HOST REDIS_PORT < <(python3 - "$REDIS_URL" <<'PY'
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(p.hostname or "127.0.0.1", p.port or 6379)
PY
)

apt_updated=0
apt_install() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
  if [ $apt_updated = 0 ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || return 1
    apt_updated=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() {  # wait_for SECONDS COMMAND...
  local seconds=$1; shift
  for _ in $(seq 1 $((seconds * 4))); do "$@" && return 0; sleep 0.25; done
  return 1
}

# ---- PostgreSQL --------------------------------------------------------------------------------
pg_listening() { (exec 3<>"/dev/tcp/$PG_HOST/$PG_PORT") 2>/dev/null; }
start_postgres() {
  command -v pg_ctlcluster >/dev/null || return 1
  local version
  for version in $(ls /etc/postgresql 2>/dev/null); do
    say "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
      || pg_ctlcluster "$version" main start 2>/dev/null || true
  done
  wait_for 30 pg_listening
}

if pg_listening; then
  say "PostgreSQL answers on $PG_HOST:$PG_PORT"
elif start_postgres; then
  say "PostgreSQL started"
elif apt_install postgresql postgresql-client && start_postgres; then
  say "PostgreSQL installed and started"
else
  die "PostgreSQL is not listening on $PG_HOST:$PG_PORT and could not be started or installed.
  Install it (Debian: apt-get install postgresql) or point TEST_DATABASE_URL at a server: make test TEST_DATABASE_URL=postgres://user:pass@host:5432/db"
fi

command -v psql >/dev/null || apt_install postgresql-client || die "psql is needed to prepare the test role (apt-get install postgresql-client)."

pg_login_ok() { PGPASSWORD="$PG_PASSWORD" psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; }
as_superuser() {  # run SQL as the postgres superuser: over TCP (trust) or via the local socket as root
  if psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1 </dev/null; then
    psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -Atqc "$1"
  elif [ "$(id -u)" = 0 ] && command -v runuser >/dev/null; then
    runuser -u postgres -- psql -p "$PG_PORT" -d postgres -v ON_ERROR_STOP=1 -Atqc "$1"
  else
    return 1
  fi
}

if ! pg_login_ok; then
  say "creating PostgreSQL role $PG_USER"
  as_superuser "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
        CREATE ROLE \"$PG_USER\" LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
      ELSE
        ALTER ROLE \"$PG_USER\" LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
      END IF; END \$\$;" >/dev/null \
    || die "cannot log in to PostgreSQL as $PG_USER and cannot create that role (no superuser access)."
  pg_login_ok || die "role $PG_USER exists but cannot log in over TCP: check pg_hba.conf allows md5/scram for 127.0.0.1."
fi
if [ "$(PGPASSWORD="$PG_PASSWORD" psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -Atqc \
      "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
  say "creating database $PG_DB"
  PGPASSWORD="$PG_PASSWORD" createdb -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$PG_DB"
fi
say "PostgreSQL ready: $(PGPASSWORD="$PG_PASSWORD" psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -Atqc 'SHOW server_version')"

# ---- Redis -------------------------------------------------------------------------------------
redis_ping() {
  local reply
  exec 3<>"/dev/tcp/$REDIS_HOST/$REDIS_PORT" 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  read -r -t 2 reply <&3 || true
  exec 3>&- 3<&-
  [[ $reply == +PONG* ]]
}
start_redis() {
  command -v redis-server >/dev/null || return 1
  say "starting redis-server on $REDIS_HOST:$REDIS_PORT"
  mkdir -p /tmp/supplychain-redis
  redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /tmp/supplychain-redis --logfile /tmp/supplychain-redis/redis.log >/dev/null
  wait_for 15 redis_ping
}

if redis_ping; then
  say "Redis answers on $REDIS_HOST:$REDIS_PORT"
elif start_redis; then
  say "Redis started"
elif apt_install redis-server && start_redis; then
  say "Redis installed and started"
else
  die "Redis is not answering on $REDIS_HOST:$REDIS_PORT and could not be started or installed.
  Install it (Debian: apt-get install redis-server) or point TEST_REDIS_URL at a server."
fi
# ---- Chromium (the browser tier: tests/integration/test_browser.py) -----------------------------------
# Debian's build, never one downloaded by `playwright install`: Playwright drives it through
# executable_path (CHROMIUM overrides where it lives).
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  say "Chromium at $CHROMIUM"
elif apt_install chromium && [ -x "$CHROMIUM" ]; then
  say "Chromium installed at $CHROMIUM"
else
  die "Chromium is not at $CHROMIUM and could not be installed.
  Install it (Debian: apt-get install chromium) or set CHROMIUM=/path/to/chromium for the browser tests."
fi
say "Chromium ready: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
say "all services ready"
