#!/usr/bin/env bash
# Benchmark of the Discord ack path: fires /ops interactions signed with the test Ed25519 key
# at a fixed rate (open loop) and prints ack latency p50/p99/max and throughput, side by side
# with a bare axum handler measured in the same run on the same machine. Ed25519 verification
# is included. Measured here, never asserted in tests. Target: p99 <= 5 ms at 500/s on 2 cores.
#
#   scripts/bench-discord.sh                  500 interactions/s for 10 s per target (in-process bot)
#   scripts/bench-discord.sh --rate 200 --secs 5
#   scripts/bench-discord.sh --url http://127.0.0.1:8080
#                                             fire at an already running `opsbot serve` whose
#                                             discord.public_key is the test key's
#
# Only loopback addresses are targeted; the run is bounded (at most 60 s per target).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The bench profile: optimised like release, without its link-time optimisation, so the build
# takes minutes on two cores.
cargo build --profile bench -q -p opsbot-tests --example discord_bench
exec "${CARGO_TARGET_DIR:-target}/release/examples/discord_bench" "$@"
