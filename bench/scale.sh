#!/usr/bin/env bash
# Scale-out with each worker capped by a cgroup v1 CPU quota: 1, 2, 4 and 8 workers, one uncapped broker.
# See bench/scale.py.
#
#   bench/scale.sh [SIZE_MB] [WORKERS...]     (default: 300 MB as 8 files; 1 2 4 8 workers; 0.1 core each)
#   SCALE_QUOTA=0.2 SCALE_REPEAT=3 bench/scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
make -s setup >/dev/null
exec .venv/bin/python bench/scale.py "$@"
