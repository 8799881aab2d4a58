#!/usr/bin/env bash
# Does one stuck client hurt everyone else? Measures a steady publish/subscribe flow's latency
# (fleetmq loadgen, HDR percentiles) on an idle broker, then again while a flood is published
# to a subscriber that has stopped reading (mosquitto_sub, SIGSTOPped), and reports the broker's
# memory and drop counters. Talks to 127.0.0.1 only; every process stops by itself.
#
#   cargo build --release && benches/flood-latency.sh        (needs mosquitto-clients)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(readlink -f "${FLEETMQ:-target/release/fleetmq}")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
http=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

(cd "$dir" && exec "$BIN" broker --mqtt "127.0.0.1:$port" --http "127.0.0.1:$http" \
    --no-archive --no-persistence --shards 2 2>"$dir/broker.log") &
broker=$!; pids+=("$broker")
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$broker/status"; }
steady() {
    "$BIN" loadgen --broker "mqtt://127.0.0.1:$port" --rate 5000 --publishers 10 --subscribers 1 \
        --duration 10s --topic-prefix steady --threads 1 2>&1 | tail -n 4
}

echo "== broker RSS at rest: $(rss)"
echo "== steady flow alone (5000 msg/s, QoS 1, 128 B)"
steady

echo "== stuck subscriber on flood/#, flood published flat out at QoS 1 and QoS 0"
mosquitto_sub -p "$port" -t 'flood/#' -q 1 -i stuck >/dev/null &
stuck=$!; pids+=("$stuck")
sleep 0.5; kill -STOP "$stuck"
"$BIN" loadgen --broker "mqtt://127.0.0.1:$port" --rate max --publishers 8 --subscribers 0 \
    --duration 25s --topic-prefix flood --threads 1 --qos 1 >"$dir/flood1.log" 2>&1 &
pids+=("$!")
"$BIN" loadgen --broker "mqtt://127.0.0.1:$port" --rate max --publishers 4 --subscribers 0 \
    --duration 25s --topic-prefix flood --threads 1 --qos 0 >"$dir/flood0.log" 2>&1 &
pids+=("$!")
sleep 5
echo "== steady flow during the flood"
steady
echo "== broker RSS during the flood: $(rss)"
curl -s "http://127.0.0.1:$http/metrics" | grep -E '^fleetmq_(messages_dropped_total|queued_messages|outbox_packets|messages_received_total)' || true
