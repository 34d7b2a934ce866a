#!/usr/bin/env bash
# The test command: format check, clippy and rustdoc with warnings denied, and the whole
# workspace's tests, with a throwaway PostgreSQL started for the run so the store suite also
# runs on PostgreSQL.
#
#   scripts/test.sh                 everything (what CI runs)
#   scripts/test.sh --no-lint       skip `cargo fmt --check`, clippy and the doc check
#   scripts/test.sh --no-postgres   do not start PostgreSQL (its tests are skipped, or fail under CI=true)
#   scripts/test.sh -- ARGS...      run `cargo test ARGS...` instead of `cargo test --workspace`
#                                   (e.g. `scripts/test.sh --no-lint -- -p opsbot --test store`)
#
# PostgreSQL: `initdb` in a temp dir, listening on a free 127.0.0.1 port with its unix socket in
# that temp dir, trust authentication (it is reachable only from this machine and lives only for
# this run). postgres refuses to run as root, so when run as root the server runs as the system
# user `opsbot-pg` (created if missing) or `nobody`. The server is stopped and the temp dir
# removed on exit, also on failure or Ctrl-C. Its URL is exported as OPSBOT_TEST_POSTGRES_URL.
# If OPSBOT_TEST_POSTGRES_URL is already set, that server is used and none is started.
#
# If PostgreSQL cannot start: under CI=true this script fails; otherwise it warns loudly and the
# PostgreSQL halves of the tests are skipped.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

lint=1
postgres=1
test_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-lint) lint=0 ;;
        --no-postgres) postgres=0 ;;
        -h | --help)
            sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        --)
            shift
            test_args=("$@")
            break
            ;;
        *)
            echo "scripts/test.sh: unknown option '$1' (try --help)" >&2
            exit 2
            ;;
    esac
    shift
done

is_ci() { [[ "${CI:-}" == "true" || "${CI:-}" == "1" ]]; }
step() { printf '\n==> %s\n' "$*"; }
loud() {
    printf '\n'
    printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n'
    printf '!!! %s\n' "$@"
    printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n'
}

# ---------------------------------------------------------------------------------------------
# Throwaway PostgreSQL
# ---------------------------------------------------------------------------------------------
pg_tmp=""
pg_user=""
pg_bin=""
pg_started=0

# Runs a command as the PostgreSQL user (or as ourselves when not root), from the temp dir so
# the unprivileged user never needs access to our working directory.
as_pg() {
    if [[ -n "$pg_user" ]]; then
        (cd "$pg_tmp" && runuser -u "$pg_user" -- "$@")
    else
        (cd "$pg_tmp" && "$@")
    fi
}

pg_stop() {
    if [[ "$pg_started" == 1 ]]; then
        echo "==> stopping the throwaway PostgreSQL"
        as_pg "$pg_bin/pg_ctl" -D "$pg_tmp/data" -m immediate -w stop >/dev/null 2>&1 || true
        pg_started=0
    fi
    if [[ -n "$pg_tmp" && -d "$pg_tmp" ]]; then
        rm -rf -- "$pg_tmp"
    fi
}
trap pg_stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

find_pg_bin() {
    local cand
    if cand="$(command -v initdb 2>/dev/null)" && [[ -x "$(dirname "$cand")/pg_ctl" ]]; then
        dirname "$cand"
        return 0
    fi
    for cand in /usr/lib/postgresql/*/bin /usr/local/pgsql/bin; do
        if [[ -x "$cand/initdb" && -x "$cand/pg_ctl" ]]; then
            echo "$cand"
            return 0
        fi
    done
    return 1
}

# Picks the unprivileged user postgres runs as when we are root.
pick_pg_user() {
    if [[ "$(id -u)" != 0 ]]; then
        pg_user=""
        return 0
    fi
    if ! command -v runuser >/dev/null 2>&1; then
        echo "runuser is not available to drop root privileges for postgres" >&2
        return 1
    fi
    if id -u opsbot-pg >/dev/null 2>&1; then
        pg_user=opsbot-pg
    elif command -v useradd >/dev/null 2>&1 &&
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
            opsbot-pg >/dev/null 2>&1; then
        pg_user=opsbot-pg
    elif id -u nobody >/dev/null 2>&1; then
        pg_user=nobody
    else
        echo "no unprivileged user to run postgres as (opsbot-pg could not be created)" >&2
        return 1
    fi
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Starts the server; on failure prints why and returns non-zero.
pg_start() {
    pg_bin="$(find_pg_bin)" || {
        echo "PostgreSQL binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin"
        return 1
    }
    pick_pg_user || return 1
    pg_tmp="$(mktemp -d "${TMPDIR:-/tmp}/opsbot-pg.XXXXXX")" || {
        pg_tmp=""
        echo "could not create a temp dir in ${TMPDIR:-/tmp}"
        return 1
    }
    mkdir -p "$pg_tmp/sock" || return 1
    if [[ -n "$pg_user" ]]; then
        chown -R "$pg_user" "$pg_tmp" || return 1
    fi
    echo "    $("$pg_bin/postgres" --version), data in $pg_tmp${pg_user:+, running as $pg_user}"

    if ! as_pg "$pg_bin/initdb" -D "$pg_tmp/data" -U postgres --auth=trust -E UTF8 \
        --no-locale --no-sync >"$pg_tmp/initdb.log" 2>&1; then
        echo "initdb failed:"
        tail -n 20 "$pg_tmp/initdb.log"
        return 1
    fi

    local attempt port
    # Durability is pointless for a throwaway server; speed is not.
    local opts="-c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off"
    opts+=" -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=64MB"
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        port=$((20000 + RANDOM % 40000))
        port_in_use "$port" && continue
        if as_pg "$pg_bin/pg_ctl" -D "$pg_tmp/data" -l "$pg_tmp/server.log" -w -t 60 \
            -o "$opts -p $port -k $pg_tmp/sock" start >/dev/null 2>&1; then
            pg_started=1
            export OPSBOT_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
            echo "    listening on 127.0.0.1:$port"
            echo "    OPSBOT_TEST_POSTGRES_URL=$OPSBOT_TEST_POSTGRES_URL"
            return 0
        fi
        # A port race (someone took it) is retried; anything else is reported below.
        if ! grep -qi "address already in use\|could not bind" "$pg_tmp/server.log" 2>/dev/null; then
            break
        fi
        echo "    port $port was taken, retrying (attempt $attempt)"
    done
    echo "pg_ctl start failed; server log:"
    tail -n 30 "$pg_tmp/server.log" 2>/dev/null || true
    return 1
}

# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
if [[ "$lint" == 1 ]]; then
    step "cargo fmt --all -- --check"
    cargo fmt --all -- --check
    step "cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings
    step "cargo doc --workspace --no-deps (warnings are errors: no broken links)"
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
fi

if [[ -n "${OPSBOT_TEST_POSTGRES_URL:-}" ]]; then
    step "using the PostgreSQL from OPSBOT_TEST_POSTGRES_URL (already set)"
elif [[ "$postgres" == 1 ]]; then
    step "starting a throwaway PostgreSQL"
    if ! pg_start; then
        if is_ci; then
            loud "PostgreSQL could not start (see above). CI=true, so this is a failure."
            exit 1
        fi
        loud "PostgreSQL could not start (see above)." \
            "The PostgreSQL tests will be SKIPPED; only SQLite is tested in this run." \
            "Under CI=true this is a failure."
        pg_stop
        unset OPSBOT_TEST_POSTGRES_URL
    fi
else
    if is_ci; then
        loud "--no-postgres under CI=true: the PostgreSQL tests will fail."
    else
        loud "--no-postgres: the PostgreSQL tests will be SKIPPED in this run."
    fi
fi

if [[ ${#test_args[@]} -gt 0 ]]; then
    step "cargo test ${test_args[*]}"
    cargo test "${test_args[@]}"
else
    # --no-fail-fast: one failing test binary must not hide the results of the others.
    step "cargo test --workspace --no-fail-fast"
    cargo test --workspace --no-fail-fast
fi

step "all green"
