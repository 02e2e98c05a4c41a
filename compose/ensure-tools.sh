#!/usr/bin/env bash
# Make sure the system tools Flowsight needs are there: Java 17 and Maven (Kafka),
# and the peer tools the benchmarks compare with. Installs missing ones with apt-get
# when run as root; otherwise says what to install.
set -euo pipefail
need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v curl >/dev/null || need+=(curl)
# the fault tests build a lossy, rate-limited network namespace
command -v nft >/dev/null || need+=(nftables)
command -v ip >/dev/null || need+=(iproute2)
command -v dash >/dev/null || need+=(dash)
# the export tests check our NetFlow and IPFIX against a real collector
command -v nfcapd >/dev/null || need+=(nfdump)
# the dashboard test drives a headless browser
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ "${FLOWSIGHT_PEER_TOOLS:-0}" = 1 ]; then
  for t in tcpdump:tcpdump softflowd:softflowd nfpcapd:nfdump argus:argus-server tshark:tshark; do
    command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
  done
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing: ${need[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "missing: ${need[*]} -- install them (apt-get install ${need[*]}) and run make again" >&2
  exit 1
fi
