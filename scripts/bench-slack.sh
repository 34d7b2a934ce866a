#!/usr/bin/env bash
# Benchmark of the Slack ack path: fires correctly signed /ops status slash commands at a fixed
# rate (open loop: ack latency p50/p99/max) and as fast as acks come back (closed loop: maximum
# throughput), side by side with a bare axum handler measured in the same run on the same
# machine, and prints the process's memory idle and at its peak. In-process, the bot is the real
# pipeline: engine, SQLite audit store, policy, kubesim, fake Slack Web API. Measured here,
# never asserted in tests. scripts/bench.sh runs it with every other benchmark.
#
#   scripts/bench-slack.sh                    500 requests/s for 10 s per target (in-process bot)
#   scripts/bench-slack.sh --rate 200 --secs 5 --clients 16
#   scripts/bench-slack.sh --url http://127.0.0.1:8080 --secret "$SIGNING_SECRET"
#                                             fire at an already running `opsbot serve`
#
# Only loopback addresses are targeted; the run is bounded (at most 60 s per target).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --profile bench -q -p opsbot-tests --example slack_bench
exec "${CARGO_TARGET_DIR:-target}/release/examples/slack_bench" "$@"
