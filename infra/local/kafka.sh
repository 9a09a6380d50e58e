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

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_args "$@"

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
        wait_listening "$dir/tansu.log" tansu
    fi
    echo "$brokers"
    ;;
stop) stop_pidfile ;;
url) echo "$brokers" ;;
*) parse_args ;;
esac
