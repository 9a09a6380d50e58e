#!/usr/bin/env bash
# A local PostgreSQL server for development and tests, on 127.0.0.1 only.
#
#   infra/local/postgres.sh start <port> <dir>   install (once) and start; prints the URL last
#   infra/local/postgres.sh stop  <port> <dir>   stop it (fast shutdown)
#   infra/local/postgres.sh url   <port> <dir>   print the URL
#
# The cluster lives in <dir>/pgdata (created on first start, kept across restarts). It is
# tuned for tests, not durability: fsync, synchronous_commit and full_page_writes are off.
# Authentication is `trust` for 127.0.0.1 (loopback only, never a shared host).
# initdb refuses to run as root, so as root the server runs as the `postgres` user.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_args "$@"

url="postgres://postgres@127.0.0.1:${port}/postgres"

# The newest installed server's binaries; installs Debian's server when there is none.
find_bin() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [ -z "$bin" ] || [ ! -x "$bin/pg_ctl" ]; then
        [ "$(id -u)" -eq 0 ] || { echo "PostgreSQL is not installed; run as root to install it" >&2; exit 1; }
        echo "installing PostgreSQL (apt-get)..." >&2
        mkdir -p /etc/postgresql-common
        # No default cluster on port 5432: this script makes its own.
        grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf ||
            echo 'create_main_cluster = false' >>/etc/postgresql-common/createcluster.conf
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
        bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    fi
    echo "$bin"
}

# Runs a command as the cluster's owner: `postgres` when we are root, else ourselves.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pgdata="$dir/pgdata"

case "$cmd" in
start)
    bin=$(find_bin)
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$dir"
        chmod 0750 "$dir"
        as_owner test -w "$dir" || {
            echo "the postgres user cannot write $dir (a parent directory is closed to it)" >&2
            exit 1
        }
    fi
    if [ ! -f "$pgdata/PG_VERSION" ]; then
        as_owner "$bin/initdb" -D "$pgdata" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
            --no-instructions >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
        cat >>"$pgdata/postgresql.conf" <<EOF
# infra/local/postgres.sh: loopback only, tuned for tests.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 2GB
EOF
        cat >"$pgdata/pg_hba.conf" <<EOF
local all all trust
host all all 127.0.0.1/32 trust
EOF
    fi
    if as_owner "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
        echo "already running" >&2
    else
        as_owner "$bin/pg_ctl" -D "$pgdata" -o "-p $port -k $dir" -l "$dir/postgres.log" -w -t 60 start >&2 ||
            { tail -20 "$dir/postgres.log" >&2; exit 1; }
    fi
    echo "$url"
    ;;
stop)
    bin=$(find_bin)
    if [ -f "$pgdata/PG_VERSION" ] && as_owner "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
        as_owner "$bin/pg_ctl" -D "$pgdata" -m fast -w -t 60 stop >&2
    else
        echo "not running" >&2
    fi
    ;;
url) echo "$url" ;;
*) parse_args ;;
esac
