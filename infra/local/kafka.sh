#!/usr/bin/env bash
# A local Kafka-compatible broker for development and tests (tansu, a Kafka-compatible
# broker in Rust, on its SQLite storage engine), on 127.0.0.1 only.
#
#   infra/local/kafka.sh start <port> <dir>   install (once) and start; prints the brokers last
#   infra/local/kafka.sh stop  <port> <dir>   stop it
#   infra/local/kafka.sh url   <port> <dir>   print the brokers (host:port)
#
# tansu is built once with `cargo install` (about 15 minutes on 2 cores) into a directory
# outside the clone ($TACHYON_CACHE, default ~/.cache/tachyon/tansu) and reused after.
# Its data lives in <dir>/tansu.db and survives a broker restart. It supports idempotent
# produce, topic creation, consumer-group offsets and fetch from any offset; it has no
# transactions (Tachyon does not need them). Use rdkafka-based tools against it: Debian's
# kcat cannot negotiate its API versions.
set -euo pipefail

usage() { echo "usage: $0 start|stop|url <port> <dir>" >&2; exit 2; }
[ $# -eq 3 ] || usage
cmd=$1 port=$2 dir=$3
[[ $port =~ ^[0-9]+$ ]] || { echo "port must be a number: $port" >&2; exit 2; }

brokers="127.0.0.1:${port}"
root="${TACHYON_CACHE:-$HOME/.cache/tachyon}/tansu"
tansu="$root/bin/tansu"
tansu_version="0.6.0"

install() {
    if [ -x "$tansu" ] && "$tansu" --version 2>/dev/null | grep -q "$tansu_version"; then
        return
    fi
    echo "building tansu $tansu_version into $root (cargo install, once: ~15 min)..." >&2
    # The build uses its own target directory, so it never contends with the project's.
    cargo install tansu --version "=$tansu_version" --locked --features libsql --root "$root" --quiet >&2
}

pidfile="$dir/tansu.pid"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "$cmd" in
start)
    install
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if running; then
        echo "already running" >&2
    else
        # tansu reads the path of a sqlite:// URL as relative: run it in the data directory.
        (cd "$dir" && exec nohup "$tansu" broker \
            --listener-url "tcp://127.0.0.1:${port}" \
            --advertised-listener-url "tcp://127.0.0.1:${port}" \
            --storage-engine "sqlite://tansu.db" \
            >"$dir/tansu.log" 2>&1) &
        echo $! >"$pidfile"
        for _ in $(seq 1 300); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                break
            fi
            running || { cat "$dir/tansu.log" >&2; exit 1; }
            sleep 0.1
        done
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "tansu did not start" >&2; cat "$dir/tansu.log" >&2; exit 1; }
    fi
    echo "$brokers"
    ;;
stop)
    if running; then
        kill "$(cat "$pidfile")"
        for _ in $(seq 1 50); do running || break; sleep 0.1; done
        running && kill -9 "$(cat "$pidfile")"
        rm -f "$pidfile"
    else
        echo "not running" >&2
    fi
    ;;
url) echo "$brokers" ;;
*) usage ;;
esac
