#!/usr/bin/env python3
"""Do real attack captures raise alerts? A sanity check on ../shared/pcaps/attack/.

    .venv/bin/python bench/detect_evidence.py [--seed 1]

The models need weeks of a site's history, and these captures last seconds to
minutes, so each one is replayed into the synthetic site of bench/detect_eval.py:
the site's scorer warms up for 3 weeks, then the capture's flows (decoded by the
shipped decoder, 5-minute windows) are added to the site's traffic at the same
day of the week and time of day as they were captured. Each capture is scored
twice from the same warmed-up state, with and without its flows, so an alert can
be told apart from the site's own false alarms. Thresholds are calibrated on the
warm-up, at a budget of 2 alerts per day.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from app.capture import pcap
from app.flows import decode
from app.flows import parts as flowlib
from app.detect.models import DAY_MS
from app.detect.scorer import ScoreConfig, SensorScorer
from app.flows.summary import Home, Summary
from detect_eval import OUT_BASE, PER_DAY, T0_MS, W_MS, WARM_DAYS, Site, ip_of

CAPTURES = [
    "stopddos-pkt.TCP.synflood.spoofed.pcap", "stopddos-pkt.TCP.DOMINATE.syn.ecn.cwr.pcapng",
    "stopddos-amp.TCP.reflection.SYNACK.pcap", "stopddos-amp.UDP.snmp.src161.pcapng",
    "stopddos-amp.dns.RRSIG.fragmented.pcap", "stopddos-amp.UDP.isakmp.pcap", "sv-ipv6-denial6-ext-headers-5.pcap",
    "chrissanders-synscan.pcapng", "esnet-masscan-tcp_0_1000.pcap", "esnet-masscan-udp_0_1000.pcap",
    "esnet-nmap_80_all.pcap", "zeek-nmap-vsn.pcap", "ndpi-tcp_scan.pcapng", "zeek-dhcp_flood.pcap",
    "zeek-ftp-bruteforce.pcap", "ndpi-dns_exfiltration.pcap", "ndpi-icmp-tunnel.pcap",
]


def site_summary(cols: dict, home: Home) -> Summary:
    s = Summary()
    for j in range(len(cols["src"])):
        src = ip_of(int(cols["src"][j]))
        s.add(src, ip_of(int(cols["dst"][j])), int(cols["proto"][j]), int(cols["sport"][j]), int(cols["dport"][j]),
              int(cols["packets"][j]), int(cols["bytes"][j]), int(cols["flags"][j]), int(cols["src"][j]) < OUT_BASE)
    return s


def capture_windows(path: Path) -> dict[int, list]:
    data = path.read_bytes()
    parts = flowlib.parts("x", decode.decode(data, pcap.index(data)), W_MS)
    out: dict[int, list] = {}
    for p in parts:
        out.setdefault(p[0], []).append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pcaps", default=os.environ.get("FLOWSIGHT_PCAPS", str(Path(__file__).resolve().parents[2]
                                                                             / "shared" / "pcaps")))
    args = ap.parse_args()
    attack = Path(args.pcaps) / "attack"
    if not attack.is_dir():
        sys.exit(f"no captures at {attack}: set FLOWSIGHT_PCAPS to the folder that holds attack/")
    home = Home()
    site = Site(args.seed)
    site.events = []          # the site's own injected events stay out of this check
    scorer = SensorScorer(ScoreConfig(W_MS, budget_per_day=2), "site")
    for i in range(WARM_DAYS * PER_DAY):
        scorer.window(T0_MS + i * W_MS, site_summary(site.window(i), home))
    warm = copy.deepcopy(scorer)
    state = site.rng.bit_generator.state
    print("| capture | flows | packets | windows | alert with it | alert without it | what fired |")
    print("|---|---|---|---|---|---|---|")
    for name in CAPTURES:
        path = attack / name
        if not path.exists():
            print(f"| {name} | (absent) | | | | | |")
            continue
        wins = capture_windows(path)
        first = min(wins)
        # the same weekday and time of day, in the site's fourth week
        target = T0_MS + WARM_DAYS * DAY_MS + ((first // DAY_MS + 3) % 7) * DAY_MS + first % DAY_MS
        shift = target - first
        idx = sorted({(w + shift - T0_MS) // W_MS for w in wins})
        results = []
        for with_capture in (True, False):
            sc = copy.deepcopy(warm)
            site.rng.bit_generator.state = state
            fired = []
            for i in range(WARM_DAYS * PER_DAY, idx[-1] + 3):
                t = T0_MS + i * W_MS
                if i < idx[0] - 2:
                    continue   # skip ahead: the windows just before the capture are enough
                summ = site_summary(site.window(i), home)
                if with_capture:
                    for p in wins.get(t - shift, []):
                        _, src, dst, proto, sport, dport, _ = p[1].split("|", 6)
                        summ.add(src, dst, int(proto), int(sport), int(dport), p[2], p[3], p[6], src in home)
                _, alerts, _ = sc.window(t, summ)
                fired += [a for a in alerts if idx[0] <= i <= idx[-1] + 1]
            results.append(fired)
        n_flows = sum(len(v) for v in wins.values())
        n_pk = sum(p[2] for v in wins.values() for p in v)
        what = "; ".join(f"{a['type']} {a['entity']} ({', '.join(a['observed'])}, {a['rung']})" for a in results[0])
        print(f"| {name} | {n_flows} | {n_pk} | {len(idx)} | {'yes' if results[0] else 'no'} | "
              f"{'yes' if results[1] else 'no'} | {what} |")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
