#!/usr/bin/env bash
# Benchmark of the Slack ack path: fires correctly signed /ops slash commands at a fixed rate
# (open loop) and prints ack latency p50/p99/max and throughput, side by side with a bare axum
# handler measured in the same run on the same machine. Measured here, never asserted in tests.
#
#   scripts/bench-slack.sh                    500 requests/s for 10 s per target (in-process bot)
#   scripts/bench-slack.sh --rate 200 --secs 5
#   scripts/bench-slack.sh --url http://127.0.0.1:8080 --secret "$SIGNING_SECRET"
#                                             fire at an already running `opsbot serve`
#
# Only loopback addresses are targeted; the run is bounded (at most 60 s per target).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release -q -p opsbot-tests --example slack_bench
exec target/release/examples/slack_bench "$@"
