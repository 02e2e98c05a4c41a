#!/usr/bin/env bash
# Pcap-to-flows cost, side by side with peer tools, in one run on one machine.
#
#   bench/decode.sh [SIZE_MB]          (default 1024; writes captures under bench/out/)
#
# For each tool it reports the median of 3 runs of CPU-seconds (user + sys, process
# start-up included), packets per CPU-second, and peak RSS. Two captures are made by
# the project's seeded generator (app/capture/synth.py):
#   mixed.pcap  200k conversations, 60k inside + 60k outside hosts, 10% IPv6, 10% VLAN
#   small.pcap  the same traffic shape over 300 inside + 300 outside hosts, because
#               tcpdump's printed-address cache degrades badly with tens of thousands
#               of hosts in one /16; tcpdump runs with TZ=UTC so it does not stat a
#               time-zone file per packet.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-1024}
out=bench/out
mkdir -p "$out"
FLOWSIGHT_PEER_TOOLS=1 compose/ensure-tools.sh
py=.venv/bin/python

gen() {  # gen NAME INSIDE OUTSIDE
  local f="$out/$1.pcap" meta="$out/$1.meta"
  local want="size=$size_mb inside=$2 outside=$3"
  if [ -f "$f" ] && [ "$(cat "$meta" 2>/dev/null)" = "$want" ]; then return; fi
  $py - "$f" "$size_mb" "$2" "$3" <<'PY'
import sys
from app.capture import synth
path, size_mb, inside, outside = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
scale = size_mb / 1024
synth.generate(seed=42, conversations=int(200_000 * scale), packets=int(1_900_000 * scale), inside=inside,
               outside=outside, v6_share=0.1, vlan_share=0.1, duration_s=600, mean_payload=560,
               in_memory=False, path=path)
PY
  echo "$want" > "$meta"
}
gen mixed 60000 60000
gen small 300 300

port=$($py -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

measure() {  # measure LABEL FILE CMD... -> "cpu_s rss_kb"
  local label=$1 file=$2; shift 2
  local runs=()
  for i in 1 2 3; do
    rm -rf "$tmp/nf" "$tmp/argus.out"; mkdir -p "$tmp/nf"
    /usr/bin/time -f "%U %S %M" -o "$tmp/time" "$@" >/dev/null 2>"$tmp/err" || {
      echo "$label failed: $(tail -3 "$tmp/err")" >&2; return 1; }
    runs+=("$(awk '{printf "%.3f %d\n", $1 + $2, $3}' "$tmp/time")")
  done
  printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p
}

packets() { $py -c "from app.capture import pcap; import numpy as np; print(pcap.index(np.fromfile('$1', np.uint8)).packets)"; }

report() {  # report TOOL FILE CMD...
  local tool=$1 file=$2; shift 2
  local r cpu rss n
  r=$(measure "$tool" "$file" "$@") || return 0
  cpu=${r% *}; rss=${r#* }
  n=${pkts[$file]}
  printf '| %-34s | %-10s | %8.2f | %12.0f | %8.0f |\n' "$tool" "$(basename "$file")" "$cpu" \
    "$(echo "$n / $cpu" | bc -l)" "$((rss / 1024))"
  echo "$tool $(basename "$file") $cpu" >> "$tmp/cpu"
}

declare -A pkts
for f in "$out/mixed.pcap" "$out/small.pcap"; do pkts[$f]=$(packets "$f"); done

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "captures: mixed.pcap $(du -m "$out/mixed.pcap" | cut -f1) MB, ${pkts[$out/mixed.pcap]} packets, 60000+60000 hosts;" \
     "small.pcap $(du -m "$out/small.pcap" | cut -f1) MB, ${pkts[$out/small.pcap]} packets, 300+300 hosts"
echo
echo "| tool                               | capture    | CPU-s    | packets/CPU-s | peak MB  |"
echo "|------------------------------------|------------|----------|---------------|----------|"
for f in "$out/mixed.pcap" "$out/small.pcap"; do
  report "flowsight (pcap2flows)" "$f" .venv/bin/pcap2flows "$f" --format csv
  report "flowsight (faust -A app pcap2flows)" "$f" .venv/bin/faust -A app pcap2flows "$f" --format csv
  report "softflowd -r" "$f" softflowd -r "$f" -n "127.0.0.1:$port" -m 2000000 -d
  report "nfpcapd -r" "$f" nfpcapd -r "$f" -w "$tmp/nf"
  report "argus -r" "$f" argus -r "$f" -w "$tmp/argus.out"
done
report "TZ=UTC tcpdump -nn -r" "$out/small.pcap" env TZ=UTC tcpdump -nn -r "$out/small.pcap"
echo
awk '{cpu[$1" "$2]=$3} END {
  for (k in cpu) if (k ~ /^flowsight \(python/) { split(k, a, " "); f=a[length(a)];
    if (("softflowd " f) in cpu) ;
  } }' "$tmp/cpu"
$py - "$tmp/cpu" <<'PY'
import sys
rows = [l.rsplit(" ", 2) for l in open(sys.argv[1]).read().splitlines()]
cpu = {(t, f): float(c) for t, f, c in rows}
for f in ("mixed.pcap", "small.pcap"):
    ours = cpu.get(("flowsight (pcap2flows)", f))
    for peer in ("softflowd -r", "nfpcapd -r", "argus -r", "TZ=UTC tcpdump -nn -r"):
        if ours and (peer, f) in cpu:
            print(f"ratio flowsight / {peer:<22} on {f}: {ours / cpu[(peer, f)]:.2f}")
PY
