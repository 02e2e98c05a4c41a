#!/usr/bin/env bash
# Make the token files and the cluster secret a deployment needs, in DIR (default compose/secrets).
#
#   compose/make-secrets.sh [-d DIR] SENSOR...
#
# Prints each sensor's upload token and one API token (for egress and the page) once; the files keep
# only salted hashes. Existing files are kept: run it again with new sensor names to add tokens.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$root/compose/secrets
if [ "${1:-}" = "-d" ]; then dir=$2; shift 2; fi
mkdir -p "$dir"
chmod 700 "$dir"
py=${PYTHON:-$root/.venv/bin/python}
[ -x "$py" ] || py=python3
PYTHONPATH=$root "$py" - "$dir" "$@" <<'PY'
import os, secrets, sys
from app.api.auth import add_token
folder, sensors = sys.argv[1], sys.argv[2:]
secret = os.path.join(folder, "cluster-secret")
if not os.path.exists(secret):
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
    os.close(fd)
for name in sensors:
    print(f"upload token for sensor {name}: {add_token(os.path.join(folder, 'sensor-tokens'), name)}")
api = os.path.join(folder, "api-tokens")
print(f"API token (egress, health, the page): {add_token(api, 'analyst')}")
open(os.path.join(folder, "sensor-tokens"), "a").close()
PY
echo "token files and cluster secret in $dir (hashes only; keep the printed tokens)" >&2
