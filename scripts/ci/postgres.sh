#!/usr/bin/env bash
# A local PostgreSQL server for the tests that run the ledger on PostgreSQL: Debian's `postgresql`,
# its cluster started (no systemd needed), a role `medref_ci` with a password (CREATEDB, so each
# test can make a fresh database) and a database `medref_test`. The URL (password included) goes
# to a root-only file, $MEDREF_CI_STATE/postgres.url (default /var/lib/medref-ci), which
# tests/conftest.py reads when MEDREF_TEST_POSTGRES_URL is not set. It connects over TCP to
# 127.0.0.1, where Debian's pg_hba.conf asks for the password (scram-sha-256).
# Idempotent: a server that is up, a role and a database that exist are kept, and so is the
# password once written. Where the server cannot be installed or started it says why and exits 0
# (the PostgreSQL tests then skip with a reason). Needs root.
set -uo pipefail

say() { echo "postgres.sh: $*"; }

STATE=${MEDREF_CI_STATE:-/var/lib/medref-ci}
URL_FILE=$STATE/postgres.url
ROLE=medref_ci
DB=medref_test

if [ "$(id -u)" != 0 ]; then
    say "not root: no local PostgreSQL set up (the PostgreSQL tests skip unless MEDREF_TEST_POSTGRES_URL is set)"
    exit 0
fi

if ! command -v pg_lsclusters >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql; } >/tmp/postgres-apt.log 2>&1; then
        say "apt could not install postgresql (see /tmp/postgres-apt.log): no local PostgreSQL (the PostgreSQL tests will skip)"
        tail -n 3 /tmp/postgres-apt.log | sed 's/^/postgres.sh:   /'
        exit 0
    fi
fi

VERSION=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$VERSION main"; then
    pg_createcluster "$VERSION" main >/tmp/postgres-cluster.log 2>&1 \
        || { say "pg_createcluster $VERSION main failed (see /tmp/postgres-cluster.log): no local PostgreSQL"; exit 0; }
fi
if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
    pg_ctlcluster "$VERSION" main start \
        || { say "the cluster $VERSION/main did not start (see /var/log/postgresql/): no local PostgreSQL"; exit 0; }
fi
PORT=$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $3}')

psql_admin() { runuser -u postgres -- psql -p "$PORT" -v ON_ERROR_STOP=1 -qtA "$@"; }
for _ in $(seq 30); do
    psql_admin -c 'select 1' >/dev/null 2>&1 && break
    sleep 1
done
if ! psql_admin -c 'select 1' >/dev/null 2>&1; then
    say "the server on port $PORT does not answer: no local PostgreSQL"
    exit 0
fi

mkdir -p "$STATE"
chmod 700 "$STATE"
PASSWORD=""
if [ -s "$URL_FILE" ]; then
    PASSWORD=$(sed -n 's|^postgresql+psycopg://[^:]*:\([^@]*\)@.*|\1|p' "$URL_FILE")
fi
if [ -z "$PASSWORD" ]; then
    PASSWORD=ci$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
fi

if [ "$(psql_admin -c "select 1 from pg_roles where rolname = '$ROLE'")" != 1 ]; then
    psql_admin -c "create role $ROLE login createdb" >/dev/null || { say "cannot create the role $ROLE"; exit 0; }
fi
# the password travels on psql's stdin, never on a command line
printf "alter role %s with login createdb password '%s';\n" "$ROLE" "$PASSWORD" | psql_admin >/dev/null \
    || { say "cannot set the password of $ROLE"; exit 0; }
if [ "$(psql_admin -c "select 1 from pg_database where datname = '$DB'")" != 1 ]; then
    psql_admin -c "create database $DB owner $ROLE" >/dev/null || { say "cannot create the database $DB"; exit 0; }
fi

(umask 077 && printf 'postgresql+psycopg://%s:%s@127.0.0.1:%s/%s\n' "$ROLE" "$PASSWORD" "$PORT" "$DB" >"$URL_FILE.part")
mv "$URL_FILE.part" "$URL_FILE"
say "PostgreSQL $VERSION up on 127.0.0.1:$PORT, role $ROLE, database $DB (URL in $URL_FILE)"
exit 0
