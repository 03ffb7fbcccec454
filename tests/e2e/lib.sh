# Helpers shared by the end-to-end scripts (tests/e2e/*.sh, benches/load/run.sh).

# A TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
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
