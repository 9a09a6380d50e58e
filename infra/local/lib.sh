# Shared by the infra/local/*.sh scripts (sourced, not run): the `start|stop|url <port>
# <dir>` arguments, and starting and stopping a server recorded in a pid file.

# Sets `cmd`, `port` and `dir` from the script's arguments, or prints the usage and exits.
parse_args() {
    [ $# -eq 3 ] || { echo "usage: $0 start|stop|url <port> <dir>" >&2; exit 2; }
    cmd=$1 port=$2 dir=$3
    [[ $port =~ ^[0-9]+$ ]] || { echo "port must be a number: $port" >&2; exit 2; }
}

# `true` while the process in the pid file $pidfile runs.
running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

# Waits (up to 30 s) until 127.0.0.1:$port accepts connections; on failure prints the
# server's log ($1) and exits. $2 names the server in the message.
wait_listening() {
    local log=$1 name=$2
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return
        fi
        running || { cat "$log" >&2; exit 1; }
        sleep 0.1
    done
    echo "$name did not start" >&2
    cat "$log" >&2
    exit 1
}

# Stops the process in $pidfile: SIGTERM, then SIGKILL after 5 s.
stop_pidfile() {
    if running; then
        kill "$(cat "$pidfile")"
        for _ in $(seq 1 50); do running || break; sleep 0.1; done
        running && kill -9 "$(cat "$pidfile")"
        rm -f "$pidfile"
    else
        echo "not running" >&2
    fi
}

# Installs the pip requirement $2 into the virtualenv $1 unless it is there already (a
# marker file records what was installed), creating the virtualenv first; on Debian, where
# venv is a package of its own, installs python3-venv when root.
ensure_venv() {
    local venv=$1 requirement=$2
    if [ "$(cat "$venv/.tachyon-installed" 2>/dev/null)" = "$requirement" ]; then
        return
    fi
    echo "installing $requirement into $venv (pip)..." >&2
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
            rm -rf "$venv"
            python3 -m venv "$venv"
        else
            echo "python3 -m venv is not available (install python3-venv)" >&2
            exit 1
        fi
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$requirement" >&2
    echo "$requirement" >"$venv/.tachyon-installed"
}
