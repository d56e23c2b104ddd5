#!/usr/bin/env bash
# Installs the system packages streamwarden needs on Debian/Ubuntu, only when missing:
#   libpcap-dev  headers and library for packet capture (build and run)
#   tshark       the oracle the capture tests compare against (tests only)
#   prometheus   for promtool, the linter /metrics must pass (tests only)
#   strace, systemd  to check the systemd unit's syscall filter against what the daemon
#                calls (strace, systemd-analyze; tests only)
#   iproute2     ip and tc: network namespaces and veth pairs for the live capture and
#                throttle tests, and tc to read back what a throttle did (tests only)
#   sqlite3      reads the state database as an owner would (tests only)
#   podman, buildah, libcap2-bin  the container image: built FROM scratch with buildah
#                (scripts/build-image), exported with podman, its file capabilities read
#                with getcap (tests only)
#   chromium, nodejs, npm  the owner's page in a real browser (scripts/browser-test; tests
#                only), with playwright-core from the npm registry into tests/browser
#                (npm ci: the version its package-lock.json pins; no browser is downloaded)
set -euo pipefail
cd "$(dirname "$0")/.."

want=()
dpkg -s libpcap-dev >/dev/null 2>&1 || want+=(libpcap-dev)
if [ "${1:-}" = "--tests" ]; then
  command -v tshark >/dev/null 2>&1 || want+=(tshark)
  command -v tcpdump >/dev/null 2>&1 || want+=(tcpdump)
  command -v promtool >/dev/null 2>&1 || want+=(prometheus)
  command -v strace >/dev/null 2>&1 || want+=(strace)
  command -v systemd-analyze >/dev/null 2>&1 || want+=(systemd)
  command -v setpriv >/dev/null 2>&1 || want+=(util-linux)
  { command -v ip && command -v tc; } >/dev/null 2>&1 || want+=(iproute2)
  command -v sqlite3 >/dev/null 2>&1 || want+=(sqlite3)
  command -v podman >/dev/null 2>&1 || want+=(podman)
  command -v buildah >/dev/null 2>&1 || want+=(buildah)
  command -v getcap >/dev/null 2>&1 || want+=(libcap2-bin)
  [ -x /usr/bin/chromium ] || want+=(chromium)
  command -v node >/dev/null 2>&1 || want+=(nodejs)
  command -v npm >/dev/null 2>&1 || want+=(npm)
fi

# playwright-core for tests/browser, once the system packages are there.
browser_modules() {
  [ "${1:-}" = "--tests" ] || return 0
  [ -f tests/browser/node_modules/playwright-core/package.json ] && return 0
  echo "installing tests/browser's npm packages (npm ci)" >&2
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
}

if [ ${#want[@]} -eq 0 ]; then
  browser_modules "${1:-}"
  exit 0
fi

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
browser_modules "${1:-}"
