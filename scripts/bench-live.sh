#!/usr/bin/env bash
# Live metering cost: a 1 Gbit/s TCP stream (1500-byte MTU, no offloads) from a "Plex" in a
# network namespace to a client on the host, captured on the host's end of the veth pair by
# examples/live_cost (the same capture → decode → meter path as `streamwarden run`).
# Needs root, iperf3 and ethtool (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
command -v iperf3 >/dev/null || apt-get install -y -qq iperf3 >/dev/null
command -v ethtool >/dev/null || apt-get install -y -qq ethtool >/dev/null
cargo build --release --example live_cost --quiet
secs=${SECS:-20}
ns=swbench
cleanup() { ip netns del "$ns" 2>/dev/null || true; ip link del sw-h 2>/dev/null || true; }
trap cleanup EXIT
cleanup
ip netns add "$ns"
ip link add sw-h type veth peer name sw-p
ip link set sw-p netns "$ns"
ip addr add 10.77.0.1/24 dev sw-h
ip -n "$ns" addr add 10.77.0.2/24 dev sw-p
ip link set sw-h mtu 1500 up
ip -n "$ns" link set sw-p mtu 1500 up
ip -n "$ns" link set lo up
ethtool -K sw-h tso off gso off gro off >/dev/null 2>&1 || true
ip netns exec "$ns" ethtool -K sw-p tso off gso off gro off >/dev/null 2>&1 || true
ip netns exec "$ns" iperf3 -s -p 32400 -D -1
sleep 0.5
# -R: the server in the namespace ("Plex") sends to the host client at 1 Gbit/s.
iperf3 -c 10.77.0.2 -p 32400 -R -b 1G -t $((secs + 4)) >/dev/null &
sleep 2
./target/release/examples/live_cost sw-h "$secs" 32400
wait
