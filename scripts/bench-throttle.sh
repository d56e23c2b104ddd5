#!/usr/bin/env bash
# What a throttle costs everyone else's packets: a TCP stream at full speed (1500-byte MTU, no
# offloads) from a "Plex" namespace through a veth pair, without traffic control, then while a
# throttle is on the interface (examples/throttle_cost: HTB root, one class, FILTERS u32
# filters for other connections, so every packet of the measured stream is tried against them
# and leaves through HTB's direct queue). Prints packets per second and the sending side's CPU
# per packet for both. Needs root, iperf3 and ethtool (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v iperf3 >/dev/null || apt-get install -y -qq iperf3 >/dev/null
command -v ethtool >/dev/null || apt-get install -y -qq ethtool >/dev/null
cargo build --release --example throttle_cost --quiet
secs=${SECS:-10}
filters=${FILTERS:-20}
ns=swthr
cleanup() { ip netns del "$ns" 2>/dev/null || true; ip link del swt-h 2>/dev/null || true; }
trap cleanup EXIT
cleanup
ip netns add "$ns"
ip link add swt-h type veth peer name swt-p
ip link set swt-p netns "$ns"
ip addr add 10.78.0.1/24 dev swt-h
ip -n "$ns" addr add 10.78.0.2/24 dev swt-p
ip link set swt-h mtu 1500 up
ip -n "$ns" link set swt-p mtu 1500 up
ip -n "$ns" link set lo up
ethtool -K swt-h tso off gso off gro off >/dev/null 2>&1 || true
ip netns exec "$ns" ethtool -K swt-p tso off gso off gro off >/dev/null 2>&1 || true
iperf3 -s -p 5201 -D -1 >/dev/null
sleep 0.5
# One run: the namespace sends to the host; prints "pps ns-per-packet".
measure() {
    ip netns exec "$ns" iperf3 -c 10.78.0.1 -p 5201 -t "$secs" -J 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)
bps = r["end"]["sum_sent"]["bits_per_second"]
cpu = r["end"]["cpu_utilization_percent"]["host_total"] / 100.0
pps = bps / 8 / 1514
print(f"{pps:.0f} {cpu * 1e9 / pps:.0f}")'
    iperf3 -s -p 5201 -D -1 >/dev/null
    sleep 0.5
}
read -r pps0 ns0 < <(measure)
coproc HOLD { ip netns exec "$ns" ./target/release/examples/throttle_cost swt-p "$filters"; }
read -r ready <&"${HOLD[0]}"
[ "$ready" = ready ] || { echo "throttle_cost did not start" >&2; exit 1; }
read -r pps1 ns1 < <(measure)
exec {HOLD[1]}>&-
wait "$HOLD_PID" || true
echo "without traffic control: $pps0 packets/s, $ns0 ns of sender CPU per packet"
echo "throttle on ($filters filters): $pps1 packets/s, $ns1 ns of sender CPU per packet"
echo "added: $((ns1 - ns0)) ns per packet"
