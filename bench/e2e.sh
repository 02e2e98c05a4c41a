#!/usr/bin/env bash
# The whole pipeline end to end (HTTP upload, Kafka, decode, flow windows, scoring, egress), with
# 1 and 2 workers, against tcpdump and softflowd on the same files, in one run. See bench/e2e.py.
#
#   bench/e2e.sh [SIZE_MB] [WORKERS...]     (default: 1024 MB, 1 and 2 workers)
set -euo pipefail
cd "$(dirname "$0")/.."
FLOWSIGHT_PEER_TOOLS=1 compose/ensure-tools.sh
make -s setup >/dev/null
# BENCH_PROFILE=1: py-spy samples the workers (JFR, in the JDK, records the broker)
if [ -n "${BENCH_PROFILE:-}" ]; then .venv/bin/pip install -q py-spy==0.4.3; fi
exec .venv/bin/python bench/e2e.py "$@"
