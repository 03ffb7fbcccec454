# Helpers shared by the end-to-end scripts (tests/e2e/*.sh, benches/load/run.sh).

# A TCP port on 127.0.0.1 that was free a moment ago, and that this script has not been
# given before: two calls in a row can get the same port from the kernel (a load-harness
# run once configured admin_listen = listen), so the ports handed out are remembered.
_SG_PORTS_TAKEN=$(mktemp "${TMPDIR:-/tmp}/sg-ports.XXXXXX")
free_port() {
    python3 - "$_SG_PORTS_TAKEN" <<'PY'
import socket, sys
path = sys.argv[1]
taken = set(open(path).read().split())
while True:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = str(s.getsockname()[1])
    s.close()
    if port not in taken:
        break
with open(path, "a") as f:
    f.write(port + "\n")
print(port)
PY
}

# wait_http URL SECONDS: poll until URL answers 2xx, or fail naming it.
wait_http() {
    local i
    for i in $(seq 1 $(( $2 * 20 ))); do
        curl -fs -o /dev/null "$1" && return 0
        sleep 0.05
    done
    echo "$1 did not answer within $2 s" >&2
    return 1
}

# require_tools NAME TOOL...: fail, naming the script, when a tool is missing.
require_tools() {
    local name=$1 tool
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "$name: $tool is not installed" >&2; exit 1; }
    done
}

# nginx_head NAME DIR: the opening of an nginx config for the benchmarks (one worker, in
# the foreground, pid and error log as $work/NAME.*, no access log, long keep-alive, temp
# paths under $work/DIR), up to the open `http {` block the caller fills and closes.
nginx_head() {
    mkdir -p "$work/$2"
    cat <<CONF
user $(id -un) $(id -gn);
worker_processes 1;
daemon off;
pid $work/$1.pid;
error_log $work/$1-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $work/$2/body;
    proxy_temp_path $work/$2/proxy;
    fastcgi_temp_path $work/$2/fastcgi;
    uwsgi_temp_path $work/$2/uwsgi;
    scgi_temp_path $work/$2/scgi;
CONF
}

# static_upstream [taskset CPU list]: an nginx answering `200 upstream ok` to everything on
# a free port (one worker, no access log, long keep-alive); prints "pid port" once it
# answers (run in a subshell, so the caller adds the pid to `pids`). The upstream of the
# CPU and instruction benchmarks.
static_upstream() {
    local cpus=${1:-} port
    port=$(free_port)
    {
        nginx_head up nginx
        cat <<CONF
    server { listen 127.0.0.1:$port; location / { return 200 "upstream ok\n"; } }
}
CONF
    } > "$work/up.conf"
    if [ -n "$cpus" ]; then
        taskset -c "$cpus" nginx -c "$work/up.conf" -p "$work/nginx" > /dev/null 2>&1 &
    else
        nginx -c "$work/up.conf" -p "$work/nginx" > /dev/null 2>&1 &
    fi
    local pid=$!
    wait_http "http://127.0.0.1:$port/" 10 >&2
    echo "$pid $port"
}

# A work directory in $work; background processes whose PIDs are added to the array
# `pids` are stopped, and the directory removed, when the script exits.
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
