#!/usr/bin/env bash
# A local DynamoDB-compatible server for development and tests (moto's server), on
# 127.0.0.1 only.
#
#   infra/local/dynamodb.sh start <port> <dir>   install (once) and start; prints the endpoint last
#   infra/local/dynamodb.sh stop  <port> <dir>   stop it
#   infra/local/dynamodb.sh url   <port> <dir>   print the endpoint
#
# moto (PyPI `moto[server]`) is installed once into a virtualenv outside the clone
# ($TACHYON_CACHE, default ~/.cache/tachyon/moto-venv). It keeps its tables in memory: a
# restart starts empty. It supports conditional writes, BatchWriteItem, GSI queries and
# TransactWriteItems; it is slow (hundreds of single writes/s), so tests stay small.
# Clients need some credentials and a region (any values): the tests set them.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_args "$@"

endpoint="http://127.0.0.1:${port}"
venv="${TACHYON_CACHE:-$HOME/.cache/tachyon}/moto-venv"
moto_version="5.1.*"

install() {
    # Installs made before the marker file existed keep working without a reinstall.
    if [ -x "$venv/bin/moto_server" ] && [ ! -f "$venv/.tachyon-installed" ]; then
        return
    fi
    ensure_venv "$venv" "moto[server]==$moto_version"
}

pidfile="$dir/moto.pid"

case "$cmd" in
start)
    install
    mkdir -p "$dir"
    if running; then
        echo "already running" >&2
    else
        nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
        echo $! >"$pidfile"
        wait_listening "$dir/moto.log" moto
    fi
    echo "$endpoint"
    ;;
stop) stop_pidfile ;;
url) echo "$endpoint" ;;
*) parse_args ;;
esac
