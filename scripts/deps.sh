#!/usr/bin/env bash
# Installs the system packages streamwarden needs on Debian/Ubuntu, only when missing:
#   libpcap-dev  headers and library for packet capture (build and run)
#   tshark       the oracle the capture tests compare against (tests only)
#   prometheus   for promtool, the linter /metrics must pass (tests only)
#   strace, systemd  to check the systemd unit's syscall filter against what the daemon
#                calls (strace, systemd-analyze; tests only)
set -euo pipefail

want=()
dpkg -s libpcap-dev >/dev/null 2>&1 || want+=(libpcap-dev)
if [ "${1:-}" = "--tests" ]; then
  command -v tshark >/dev/null 2>&1 || want+=(tshark)
  command -v tcpdump >/dev/null 2>&1 || want+=(tcpdump)
  command -v promtool >/dev/null 2>&1 || want+=(prometheus)
  command -v strace >/dev/null 2>&1 || want+=(strace)
  command -v systemd-analyze >/dev/null 2>&1 || want+=(systemd)
  command -v setpriv >/dev/null 2>&1 || want+=(util-linux)
fi
[ ${#want[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "streamwarden needs: ${want[*]} (install them with your package manager)" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "installing ${want[*]} needs root: run as root or install sudo" >&2
    exit 1
  fi
fi
echo "installing ${want[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
