#!/usr/bin/env bash
# `make run`: start a one-node Kafka, then a Flowsight worker in the foreground.
# Ctrl-C stops the worker and Kafka and leaves no process behind.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
kafka=compose/kafka/kafka.sh
worker_pid=""
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$worker_pid" ] && kill -0 "$worker_pid" 2>/dev/null; then
    kill -TERM "$worker_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
  fi
  "$kafka" stop || true
  echo "flowsight: stopped" >&2
}
trap cleanup EXIT INT TERM
"$kafka" start 1
export FLOWSIGHT_BROKER=${FLOWSIGHT_BROKER:-kafka://$("$kafka" bootstrap)}
export FLOWSIGHT_DATADIR=${FLOWSIGHT_DATADIR:-var/worker}
port=${FLOWSIGHT_WEB_PORT:-6066}
cat <<MSG

Flowsight is starting on http://localhost:$port  (Ctrl-C stops everything)

  upload a capture:   curl -T capture.pcap http://localhost:$port/v1/captures
  read its flows:     curl 'http://localhost:$port/v1/flows?timeout=30'
  health:             curl http://localhost:$port/v1/health

MSG
.venv/bin/faust -A app worker -l info --web-port "$port" &
worker_pid=$!
wait "$worker_pid"
