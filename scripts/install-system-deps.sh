#!/usr/bin/env bash
# Installs the system programs the tests talk to for real (dig, etcd, curl, chromium,
# docker-compose, prometheus), if missing.
# Benchmarks need more (dnsmasq, dnsperf, nginx, wrk): `scripts/install-system-deps.sh --bench`.
set -euo pipefail
need=()
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v curl >/dev/null 2>&1 || need+=(curl)  # the demo test pastes a curl command
# The web GUI's browser test drives headless Chromium (tests/integration/gui/).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# compose/docker-compose.yaml is validated with `docker-compose config` (no engine needed).
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
# A real Prometheus scrapes the sidecars where a MeshMetric says (issue 18).
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
if [ "${1:-}" = "--bench" ]; then
  command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)
  command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
  command -v nginx >/dev/null 2>&1 || need+=(nginx-light libnginx-mod-stream)
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing system packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Some packages start a service on their default port; tests never use default ports.
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
