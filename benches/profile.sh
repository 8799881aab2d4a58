#!/usr/bin/env bash
# Where a broker's CPU goes at a fixed rate: starts fleetmq (SHARDS shards, in memory, no archive)
# or mosquitto, drives it with `fleetmq loadgen` at one of the side-by-side harness's fixed-rate
# shapes, records `perf record -g` of the broker alone for the middle of the run, and prints
# the share of samples in each cost bucket (sleeping and waking, syscalls, MQTT work) plus the
# top symbols. Talks to 127.0.0.1 only; every process stops by itself.
#
#   cargo build --release
#   benches/profile.sh fanin-q0                 # fleetmq, 2 shards
#   SHARDS=1 benches/profile.sh pairs-q0
#   BROKER=mosquitto benches/profile.sh fanin-q0
#
# Workloads: fanin-q0 (200 -> 1, 40k/s), fanin-q1 (200 -> 1, QoS 1, 10k/s), pairs-q0 (100 x 100,
# 30k/s), fanout-q0 (1 -> 200, 300/s = 60k deliveries/s), fleet (2000 simulated vehicles at
# 1 Hz with a --verify dashboard subscriber; fleetmq archives, mosquitto gets `fleetmq ingest`
# beside it, which is not profiled: compare the fleet's CPU with the side-by-side harness). DURATION (s, default 10) and TOP
# (symbols listed, default 25) can be set. Needs perf; keeps perf.data in KEEP=dir if set.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(readlink -f "${FLEETMQ:-target/release/fleetmq}")
BROKER=${BROKER:-fleetmq}
SHARDS=${SHARDS:-2}
SOCKET_IO=${SOCKET_IO:-epoll}
DURATION=${DURATION:-10}
TOP=${TOP:-25}
workload=${1:?usage: benches/profile.sh fanin-q0|fanin-q1|pairs-q0|fanout-q0|fleet}
# rate: messages routed per second (deliveries for fan-out), to turn samples into CPU per message.
case "$workload" in
fanin-q0) load=(--publishers 200 --subscribers 1 --qos 0 --rate 40000); rate=40000 ;;
fanin-q1) load=(--publishers 200 --subscribers 1 --qos 1 --rate 10000); rate=10000 ;;
pairs-q0) load=(--publishers 100 --subscribers 100 --pattern pairs --qos 0 --rate 30000); rate=30000 ;;
fanout-q0) load=(--publishers 1 --subscribers 200 --qos 0 --rate 300); rate=60000 ;;
fleet) load=(); rate=2060 ;;
*) echo "unknown workload $workload" >&2; exit 2 ;;
esac

dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$dir"; }
trap cleanup EXIT
[ -z "${KEEP:-}" ] || echo "# perf.data and logs kept in $dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if [ "$BROKER" = mosquitto ]; then
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nmax_queued_messages 1000\nmax_inflight_messages 100\n' \
        "$port" >"$dir/mosquitto.conf"
    mosquitto -c "$dir/mosquitto.conf" 2>"$dir/broker.log" &
else
    archive=(--no-archive)
    [ "$workload" = fleet ] && archive=()
    "$BIN" broker --mqtt "127.0.0.1:$port" --http off --shards "$SHARDS" \
        --socket-io "$SOCKET_IO" --no-persistence \
        "${archive[@]}" --data "$dir/data" 2>"$dir/broker.log" &
fi
broker=$!
pids+=("$broker")
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

if [ "$workload" = fleet ]; then
    "$BIN" simulate --broker "mqtt://127.0.0.1:$port" --vehicles 2000 --duration "${DURATION}s" \
        --speedup 1 --verify >"$dir/loadgen.log" 2>&1 &
else
    "$BIN" loadgen --broker "mqtt://127.0.0.1:$port" --payload-size 100 --duration "${DURATION}s" \
        --topic-prefix bench --json "${load[@]}" >"$dir/loadgen.json" 2>"$dir/loadgen.log" &
fi
gen=$!
pids+=("$gen")
# Skip the connects; record the steady middle of the run.
sleep 2
window=$((DURATION - 4))
perf record -q -g -F 2999 -p "$broker" -o "$dir/perf.data" -- sleep "$window" 2>/dev/null
wait "$gen"
result=$( [ "$workload" = fleet ] && grep -E "published|verify" "$dir/loadgen.log" | tr '\n' ' ' || tail -1 "$dir/loadgen.json")
echo "# $BROKER $( [ "$BROKER" = fleetmq ] && echo "($SHARDS shards, socket_io $SOCKET_IO)") $workload: $result"

# Buckets by a symbol anywhere in the sample's call chain, first match wins: the order puts the
# sleep/wake machinery before the syscalls that contain it.
# A sample is 1/2999 s of CPU; at `rate` messages per second over `window` seconds, that makes
# the microseconds of broker CPU per message each bucket stands for.
perf script -i "$dir/perf.data" -F ip,sym 2>/dev/null | awk -v top="$TOP" -v rate="$rate" -v window="$window" '
BEGIN { per_msg = 1e6 / 2999 / (rate * window) }
function bucket(chain) {
    if (chain ~ /asm_sysvec_reschedule_ipi|sysvec_call_function|smp_call_function/) return "IPIs (reschedule, membarrier)"
    if (chain ~ /membarrier/) return "membarrier syscall"
    if (chain ~ /io_cqring_wait|schedule_hrtimeout|do_nanosleep|futex_wait|ep_poll/) return "sleeping/waking (io_uring wait, epoll, futex)"
    if (chain ~ /eventfd_write|eventfd_read/) return "eventfd (waking a peer)"
    if (chain ~ /hrtimer|clock_gettime|timerfd|io_timeout/) return "timers and clocks"
    if (chain ~ /tcp_sendmsg|sock_sendmsg|__sys_sendto|io_send/) return "socket send"
    if (chain ~ /tcp_recvmsg|sock_recvmsg|__sys_recvfrom|io_recv/) return "socket recv"
    if (chain ~ /io_poll|vfs_poll|io_arm_poll|__io_queue|io_issue_sqe|io_submit_sqes|io_uring_enter/) return "io_uring submit/poll"
    if (chain ~ /entry_SYSCALL|do_syscall/) return "other syscalls"
    if (chain ~ /glommio/) return "glommio executor (user space)"
    return "MQTT and routing (user space, rest)"
}
/^$/ { if (n) { b = bucket(chain); count[b]++; total++; self[first]++ } chain = ""; n = 0; next }
{ sym = $2; for (i = 3; i <= NF; i++) sym = sym " " $i; if (n == 0) first = sym; chain = chain "|" sym; n++ }
END {
    if (n) { b = bucket(chain); count[b]++; total++; self[first]++ }
    for (b in count) printf "%5.1f%%  %6.2f us/msg  %s\n", 100 * count[b] / total, count[b] * per_msg, b | "sort -rn"
    close("sort -rn")
    print "\ntop symbols, by samples in the symbol itself:"
    for (s in self) printf "%5.1f%%  %s\n", 100 * self[s] / total, s | ("sort -rn | head -n " top)
    close("sort -rn | head -n " top)
    printf "(%d samples: %.2f us of broker CPU per message)\n", total, total * per_msg
}'

