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
# A development token, made once and kept in var/run/auth (0600): it uploads as any sensor and reads.
# Token files hold its salted hash only; a deployment makes its own with compose/make-secrets.sh.
auth=var/run/auth
if [ ! -s "$auth/dev-token" ]; then
  mkdir -p "$auth" && chmod 700 "$auth"
  PYTHONPATH=. .venv/bin/python - "$auth" <<'PY'
import os, secrets, sys
from app.auth import hash_token, new_token
d = sys.argv[1]
token = new_token()
def write(name, text):
    fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, text.encode())
    os.close(fd)
write("sensor-tokens", f"*:{hash_token(token)}\n")
write("api-tokens", f"dev:{hash_token(token)}\n")
write("cluster-secret", secrets.token_urlsafe(32) + "\n")
write("dev-token", token + "\n")
PY
fi
export FLOWSIGHT_SENSOR_TOKENS=${FLOWSIGHT_SENSOR_TOKENS:-$auth/sensor-tokens}
export FLOWSIGHT_API_TOKENS=${FLOWSIGHT_API_TOKENS:-$auth/api-tokens}
export FLOWSIGHT_CLUSTER_SECRET_FILE=${FLOWSIGHT_CLUSTER_SECRET_FILE:-$auth/cluster-secret}
token=$(cat "$auth/dev-token")
cat <<MSG

Flowsight is starting on http://localhost:$port  (Ctrl-C stops everything)

  development token:  $token
                      (uploads as any sensor and reads; kept in $auth/dev-token)
  upload a capture:   curl -T capture.pcap -H "Authorization: Bearer $token" -H 'X-Sensor: tap1' \\
                        http://localhost:$port/v1/captures
  read its flows:     curl -H "Authorization: Bearer $token" 'http://localhost:$port/v1/flows?timeout=30'
  the analyst's page: http://localhost:$port/  (sign in with the token)

MSG
.venv/bin/faust -A app worker -l info --web-port "$port" &
worker_pid=$!
wait "$worker_pid"
