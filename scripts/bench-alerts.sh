#!/usr/bin/env bash
# Benchmark of the Alertmanager intake (bot/src/alerts), printed, never asserted in tests:
#  1. webhook intake throughput (alerts/s parsed, grouped and persisted on SQLite) side by side
#     with a bare axum handler that only parses the JSON, in the same run;
#  2. a storm of 10,000 alerts in 500 groups within 10 s into one channel: chat writes per channel
#     per second (target <= 1) and whether every group is visible at the end.
#
#   scripts/bench-alerts.sh                          5 s per intake target, 8 clients, 100 alerts each
#   scripts/bench-alerts.sh --secs 3 --clients 4 --alerts-per 50
#
# Runs in-process on loopback only; bounded (intake at most 30 s per target, the storm ~40 s).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --profile bench -q -p opsbot-tests --example alerts_bench
exec "${CARGO_TARGET_DIR:-target}/release/examples/alerts_bench" "$@"
