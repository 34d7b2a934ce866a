#!/usr/bin/env bash
# Every benchmark, one command: builds them optimised, runs each briefly, prints its own output,
# then one table of figures with the reference each is compared with. Measured, never asserted.
#
#   scripts/bench.sh            about four minutes on two cores, after the build
#   scripts/bench.sh --quick    shorter runs (Slack: 3 s per loop)
#
# The benchmarks (each can be run alone):
#   cargo bench -p opsbot-policies --bench policy    policy load / decide / explain, 10-10,000 rules
#                                                     (and `opsbot policy explain` timed whole, here)
#   cargo bench -p opsbot-commands --bench status    `status` with 10 / 200 / 2,000 deployments
#   cargo bench -p kubesim --bench scale              kubesim start-up and idle CPU, 200 / 2,000
#   cargo bench -p opsbot --bench audit               audit appends vs raw SQLite, same transaction
#   scripts/bench-slack.sh                            Slack ack latency, max throughput, memory
#   serve_bench (example of opsbot-tests)             `opsbot serve` itself: ack latency and
#                                                     memory at 500 to 5,000 requests/s, after
#                                                     a burst, and with a 1,000-rule policy
#                                                     edited every second
#
# The Slack benchmark runs twice: as the process starts by default, and with MALLOC_ARENA_MAX=2
# (glibc's allocator then keeps two arenas instead of up to eight per core), to show what the
# arena count does to the memory figures (README: little, so the image does not set it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs=5
[[ "${1:-}" == "--quick" ]] && secs=3

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() { # name, command...
    local name=$1
    shift
    echo "== $name"
    "$@" | tee "$out/$name"
}

cargo bench -q --no-run -p opsbot-policies --bench policy -p opsbot-commands --bench status \
    -p kubesim --bench scale -p opsbot --bench audit
cargo build --profile bench -q -p opsbot-tests --example slack_bench --example serve_bench \
    -p opsbot --bin opsbot
target=${CARGO_TARGET_DIR:-target}

run policy cargo bench -q -p opsbot-policies --bench policy
run status cargo bench -q -p opsbot-commands --bench status
run kubesim cargo bench -q -p kubesim --bench scale
run audit cargo bench -q -p opsbot --bench audit
# The whole `opsbot policy explain` command (process start, read, load, explain, print), as an
# operator runs it: the median of 21 runs on the benchmark's generated policies.
cargo bench -q -p opsbot-policies --bench policy -- --write-policies "$out"
explain_cli() { # rules: the last team's member scales its service, as the benchmark asks
    local t=$((($1 + 3) / 4 - 1)) times=() i start
    for i in $(seq 21); do
        start=$EPOCHREALTIME
        "$target/release/opsbot" policy explain --policy "$out/policy-$1.yaml" \
            --subject "slack:U${t}A" --action scale --namespace "team-$t" \
            --resource "deployment/svc-$t-api" --cluster prod --channel C0OPS --replicas 5 \
            >/dev/null
        times+=("$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", (b - a) * 1000 }')")
    done
    printf '%s\n' "${times[@]}" | sort -n | sed -n 11p
}
echo "== policy explain (whole command)"
for r in 10 1000; do
    printf '%s %s ms\n' "$r" "$(explain_cli "$r")" | tee -a "$out/explain-cli"
done
run slack env -u MALLOC_ARENA_MAX "$target/release/examples/slack_bench" --rate 500 --secs "$secs"
run slack-arenas env MALLOC_ARENA_MAX=2 "$target/release/examples/slack_bench" --rate 500 \
    --secs "$secs"
# The bot as an operator runs it: `opsbot serve` in its own process, its memory read from /proc.
run serve "$target/release/examples/serve_bench" --bin "$target/release/opsbot" --secs "$secs" \
    --rates 500,1000,2000,5000
run serve-policy "$target/release/examples/serve_bench" --bin "$target/release/opsbot" \
    --secs "$secs" --rates 500 --burst-clients 0 --policy "$out/policy-1000.yaml"
run serve-policy-edits "$target/release/examples/serve_bench" --bin "$target/release/opsbot" \
    --secs "$secs" --rates 500 --burst-clients 0 --policy "$out/policy-1000.yaml" --edit-policy

# Pick a whitespace-separated field: file, line pattern, field number.
field() { awk -v pat="$2" -v n="$3" '$0 ~ pat { print $n; exit }' "$out/$1"; }

status10=$(field status '^ +10 ' 3)

echo
echo "| measure | figure | reference | ratio |"
echo "|---|---|---|---|"
printf '| Slack ack p99 at 500/s (open loop, default allocator) | %s ms | bare axum %s ms | |\n' \
    "$(awk '/^opsbot/ && / ms / { print $8; exit }' "$out/slack")" \
    "$(awk '/^bare axum handler/ && / ms / { print $9; exit }' "$out/slack")"
for run in slack slack-arenas; do
    label="default allocator"
    [[ $run == slack-arenas ]] && label="MALLOC_ARENA_MAX=2"
    b=$(awk '/^bare axum handler +[0-9]+ ok/ { sub("/s", "", $10); print $10; exit }' "$out/$run")
    o=$(awk '/^opsbot \/slack\/commands +[0-9]+ ok/ { sub("/s", "", $9); print $9; exit }' "$out/$run")
    printf '| memory, whole bench process (%s): idle / peak / after | %s / %s / %s MiB | ≤ 25 MiB idle, ≤ 64 MiB peak | |\n' \
        "$label" \
        "$(awk '/^memory/ { print $(NF-9); exit }' "$out/$run")" \
        "$(awk '/^memory/ { print $(NF-6); exit }' "$out/$run")" \
        "$(awk '/^memory/ { print $(NF-1); exit }' "$out/$run")"
    printf '| Slack max throughput (%s) | %s/s | bare axum %s/s | %s (target ≥ 0.5) |\n' "$label" \
        "$o" "$b" "$(awk -v a="$o" -v b="$b" 'BEGIN { if (b > 0) printf "%.2f", a / b }')"
done
serve_p99() { awk '/^opsbot serve +500\/s/ { print $8, $9; exit }' "$out/$1"; }
printf '| `opsbot serve` ack p99 at 500/s: 1-rule / 1,000-rule policy / 1,000 rules edited every second | %s / %s / %s | ≤ 5 ms in each case | |\n' \
    "$(serve_p99 serve)" "$(serve_p99 serve-policy)" "$(serve_p99 serve-policy-edits)"
peak() { sed -nE "/$1/ { s/.*peak ([0-9.]+) MiB.*/\1/p; q }" "$out/serve"; }
printf '| `opsbot serve` memory, its own process (bench build): idle | %s MiB | ≤ 25 MiB | |\n' \
    "$(awk '/^opsbot serve \(pid/ { print $(NF-1); exit }' "$out/serve")"
printf '| `opsbot serve` peak memory at 1,000 / 2,000 / 5,000 requests/s | %s / %s / %s MiB | ≤ 64 MiB at any rate | |\n' \
    "$(peak '^memory at 1000')" "$(peak '^memory at 2000')" "$(peak '^memory at 5000')"
printf '| `opsbot serve` memory, burst of 512 clients for 2 s: peak / 5 s later | %s / %s MiB | ≤ 64 MiB at any rate | |\n' \
    "$(peak '^memory after a burst')" \
    "$(sed -nE '/^memory after a burst/ { s/.*later ([0-9.]+) MiB.*/\1/p; q }' "$out/serve")"
for w in 1 8; do
    printf '| audit appends, %s writer(s) | %s | raw sqlx %s | %s (target ≥ 0.5) |\n' "$w" \
        "$(field audit "^ +$w " 2)" "$(field audit "^ +$w " 3)" "$(field audit "^ +$w " 4)"
done
for r in 10 1000 10000; do
    printf '| policy decide, %s rules | %s %s | ≤ 50 µs at 1,000 | |\n' "$r" \
        "$(field policy "^ +$r " 4)" "$(field policy "^ +$r " 5)"
    printf '| policy load + explain, %s rules | %s %s + %s %s | ≤ 30 ms at 1,000 | |\n' "$r" \
        "$(field policy "^ +$r " 2)" "$(field policy "^ +$r " 3)" \
        "$(field policy "^ +$r " 8)" "$(field policy "^ +$r " 9)"
done
for r in 10 1000; do
    printf '| `opsbot policy explain`, whole command, %s rules (median of 21) | %s ms | ≤ 30 ms at 1,000 | |\n' \
        "$r" "$(field explain-cli "^$r " 2)"
done
for n in 10 200 2000; do
    mean=$(field status "^ +$n " 3)
    printf '| status, %s deployments in the namespace | %s ms | %s ms at 10 | %s (target ≤ 2) |\n' \
        "$n" "$mean" "$status10" \
        "$(awk -v a="$mean" -v b="$status10" 'BEGIN { if (b > 0) printf "%.2f", a / b }')"
done
for n in 200 2000; do
    printf '| kubesim start, %s deployments (wall; CPU) | %s s; %s s CPU | < 2 s | |\n' "$n" \
        "$(field kubesim "^ +$n " 2)" "$(field kubesim "^ +$n " 9)"
    printf '| kubesim idle CPU, %s deployments (+ one full resync a minute) | %s %% of a core (+ %s ms / 60 s) | < 5 %% | |\n' \
        "$n" "$(field kubesim "^ +$n " 5)" "$(field kubesim "^ +$n " 7)"
done
printf '| start → ready (in-process: kubesim seed, SQLite migrations, engine) | %s | | |\n' \
    "$(awk '/^ready in/ { print $3, $4; exit }' "$out/slack")"
