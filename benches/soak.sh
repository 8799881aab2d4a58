#!/usr/bin/env bash
# Soak test of the broker under sustained load and client churn; the work is in soak.py (see
# there for what it does and the environment it reads). Run it under the measurement lock:
#
#   flock /tmp/fleetmq-bench.lock benches/soak.sh                      # 5 minutes
#   SOAK_DURATION=60s flock /tmp/fleetmq-bench.lock benches/soak.sh    # a quick run
set -euo pipefail
exec python3 "$(dirname "$0")/soak.py" "$@"
