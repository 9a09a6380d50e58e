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
    if [ -x "$venv/bin/moto_server" ]; then
        return
    fi
    echo "installing moto[server] into $venv (pip)..." >&2
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        # Debian splits venv out of python3.
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
            rm -rf "$venv"
            python3 -m venv "$venv"
        else
            echo "python3 -m venv is not available (install python3-venv)" >&2
            exit 1
        fi
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$moto_version" >&2
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
