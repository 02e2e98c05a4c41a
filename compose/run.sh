#!/usr/bin/env bash
# `make run`: start a one-node Kafka, then a Flowsight worker in the foreground.
# Ctrl-C (or SIGTERM to the whole process group) stops the worker first, then Kafka, and leaves no
# process behind: Kafka runs in a session of its own, so the group's signal reaches the worker alone.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
kafka=compose/kafka/kafka.sh
var=${FLOWSIGHT_VAR:-$root/var}
worker_pid=""
# seconds the worker has to stop before it is killed (a worker owes nothing: Kafka holds the state)
stop_s=8
cleanup() {
  trap - EXIT INT TERM
  rm -f "$var/run/deployment.env"
  if [ -n "$worker_pid" ] && kill -0 "$worker_pid" 2>/dev/null; then
    kill -TERM "$worker_pid" 2>/dev/null || true
    for _ in $(seq $((stop_s * 10))); do kill -0 "$worker_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$worker_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
  fi
  "$kafka" stop || true
  echo "flowsight: stopped" >&2
}
trap cleanup EXIT INT TERM
"$kafka" start 1
export FLOWSIGHT_BROKER=${FLOWSIGHT_BROKER:-kafka://$("$kafka" bootstrap)}
export FLOWSIGHT_DATADIR=${FLOWSIGHT_DATADIR:-$var/worker}
port=${FLOWSIGHT_WEB_PORT:-6066}
# A development token, made once and kept in var/run/auth (0600): it uploads as any sensor and reads.
# Token files hold its salted hash only; a deployment makes its own with compose/make-secrets.sh.
auth=$var/run/auth
if [ ! -s "$auth/dev-token" ]; then
  mkdir -p "$auth" && chmod 700 "$auth"
  PYTHONPATH=. .venv/bin/python - "$auth" <<'PY'
import os, secrets, sys
from app.api.auth import hash_token, new_token
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
# what this deployment is, for the commands run beside it (app/settings.py, deployment_defaults)
printf 'FLOWSIGHT_BROKER=%s\nFLOWSIGHT_WEB_PORT=%s\nFLOWSIGHT_TLS_CERT=%s\nFLOWSIGHT_TOPIC_PREFIX=%s\n' \
  "$FLOWSIGHT_BROKER" "$port" "${FLOWSIGHT_TLS_CERT:-}" "${FLOWSIGHT_TOPIC_PREFIX:-}" > "$var/run/deployment.env"
.venv/bin/faust -A app worker -l info --web-port "$port" &
worker_pid=$!
wait "$worker_pid"
