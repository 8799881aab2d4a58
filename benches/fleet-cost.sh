#!/usr/bin/env bash
# Where the fleet workload's broker CPU goes: the side-by-side harness's fleet workload (2000
# vehicles at 1 Hz, QoS 1, a --verify dashboard subscriber) against fleetmq with 1 and 2 shards,
# with and without its archive, and against mosquitto alone and with `fleetmq ingest` beside it.
# Prints broker CPU microseconds per reading (user + system, all threads, from /proc), counted
# from the simulator's start to its end. Talks to 127.0.0.1 only; every process stops by itself.
#
#   cargo build --release && benches/fleet-cost.sh        (needs mosquitto)
#   VEHICLES=500 DURATION=10 benches/fleet-cost.sh        (a quick run)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(readlink -f "${FLEETMQ:-target/release/fleetmq}")
VEHICLES=${VEHICLES:-2000}
DURATION=${DURATION:-20}
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }
ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }

# run LABEL PID... : drives the fleet at the broker on $port, prints CPU per reading of PIDs.
run() {
    local label=$1; shift
    local before after readings
    before=$(ticks "$@")
    "$BIN" simulate --broker "mqtt://127.0.0.1:$port" --vehicles "$VEHICLES" \
        --duration "${DURATION}s" --speedup 1 --verify >"$dir/simulate.log" 2>&1
    after=$(ticks "$@")
    readings=$(grep -oP 'published \K[0-9]+' "$dir/simulate.log")
    awk -v l="$label" -v t=$((after - before)) -v n="$readings" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%-34s %8d readings  %7.1f us of broker CPU per reading\n", l, n, t / hz / n * 1e6 }'
    for p in "$@"; do kill "$p"; wait "$p" 2>/dev/null || true; done
    pids=()
}

fleetmq() {
    local shards=$1; shift
    port=$(free_port)
    rm -rf "$dir/data"
    "$BIN" broker --mqtt "127.0.0.1:$port" --http off --shards "$shards" --no-persistence \
        --data "$dir/data" "$@" 2>"$dir/broker.log" &
    pids+=($!)
    wait_port "$port"
    run "fleetmq, $shards shard(s) ${*:-(archive on)}" "${pids[@]}"
}

mosquitto_run() {
    local with_ingest=$1
    port=$(free_port)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nmax_queued_messages 1000\nmax_inflight_messages 100\n' \
        "$port" >"$dir/mosquitto.conf"
    mosquitto -c "$dir/mosquitto.conf" 2>"$dir/mosquitto.log" &
    pids+=($!)
    wait_port "$port"
    if [ "$with_ingest" = yes ]; then
        rm -rf "$dir/archive"
        "$BIN" ingest --broker "mqtt://127.0.0.1:$port" --data "$dir/archive" 2>"$dir/ingest.log" &
        pids+=($!)
        sleep 0.5
        run "mosquitto + fleetmq ingest" "${pids[@]}"
    else
        run "mosquitto alone (no archive)" "${pids[@]}"
    fi
}

echo "# $VEHICLES vehicles at 1 Hz for ${DURATION}s, QoS 1, --verify dashboard; $(nproc) cores"
fleetmq 1 --no-archive
fleetmq 1
fleetmq 2 --no-archive
fleetmq 2
mosquitto_run no
mosquitto_run yes
