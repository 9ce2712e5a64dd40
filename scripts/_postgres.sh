# shellcheck shell=bash
# A throwaway PostgreSQL server for the test suite, sourced by scripts/test (not run).
#
# - CRMKIT_TEST_POSTGRES_URL already set: use that server (a developer's own); do nothing.
# - CRMKIT_POSTGRES=none: start nothing; the PostgreSQL tests skip.
# - Otherwise: find initdb/pg_ctl in /usr/lib/postgresql/*/bin (highest version), installing
#   the Debian package `postgresql` when missing (as root, or through sudo), create a
#   cluster in a fresh `mktemp -d` directory, start it on a free port of 127.0.0.1, create
#   the database crmkit_test and export
#       CRMKIT_TEST_POSTGRES_URL=postgresql+psycopg://crmkit@127.0.0.1:PORT/crmkit_test
#       CRMKIT_REQUIRE_POSTGRES=1
#   An EXIT trap (_crmkit_pg_stop, composed with any EXIT trap already set) stops the
#   server and removes the directory. A script that sets its own EXIT trap later must
#   call _crmkit_pg_stop from it, and must not `exec` its last command.
# postgres refuses to run as root: as root, the cluster belongs to the `postgres` system user
# (created by the Debian package, or here when missing) and runs through `runuser`.
# Every failure returns non-zero (which stops scripts/test under set -e) after saying why,
# with the server log when there is one.

_CRMKIT_PG_DIR=
_CRMKIT_PG_BIN=

_crmkit_pg_step() { printf '\n==> %s\n' "$*"; }

_crmkit_pg_fail() {
    printf 'error: %s\n' "$*" >&2
    local log=${_CRMKIT_PG_DIR:+$_CRMKIT_PG_DIR/log}
    if [ -n "$log" ] && [ -s "$log" ]; then
        printf -- '--- PostgreSQL server log (%s) ---\n' "$log" >&2
        cat -- "$log" >&2
        printf -- '--- end of server log ---\n' >&2
    fi
    return 1
}

# Runs a PostgreSQL server program as the cluster's owner: `postgres` when we are root.
_crmkit_pg_as_owner() {
    if [ "$EUID" -eq 0 ]; then
        (cd -- "$_CRMKIT_PG_DIR" && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# The EXIT trap: stops the server (if any) and removes its directory. Never fails.
_crmkit_pg_stop() {
    local dir=$_CRMKIT_PG_DIR
    [ -n "$dir" ] || return 0
    if [ -f "$dir/data/postmaster.pid" ]; then
        if ! _crmkit_pg_as_owner "$_CRMKIT_PG_BIN/pg_ctl" stop -D "$dir/data" -m fast -s \
            >/dev/null 2>&1; then
            printf 'warning: could not stop the throwaway PostgreSQL in %s\n' "$dir" >&2
        fi
    fi
    _CRMKIT_PG_DIR=
    rm -rf -- "$dir" || true
    return 0
}

# Sets the EXIT trap to _crmkit_pg_stop, followed by the EXIT trap already set, if any.
_crmkit_pg_trap() {
    local previous
    local -a words
    previous=$(trap -p EXIT)
    if [ -z "$previous" ]; then
        trap _crmkit_pg_stop EXIT
        return 0
    fi
    eval "words=($previous)" # trap -- 'command' EXIT
    # shellcheck disable=SC2064 # the previous command is expanded now, on purpose
    trap "_crmkit_pg_stop; ${words[2]}" EXIT
}

_crmkit_pg_find_bin() {
    local bin best=
    for bin in /usr/lib/postgresql/*/bin; do
        if [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] && [ -x "$bin/createdb" ]; then
            best+="$bin"$'\n'
        fi
    done
    [ -n "$best" ] || return 1
    printf '%s' "$best" | sort -V | tail -n 1
}

_crmkit_pg_install() {
    local -a sudo=()
    if [ "$EUID" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || _crmkit_pg_fail \
            "the PostgreSQL server is not installed, and installing it needs root or sudo" \
            "(neither is available). Install the Debian package postgresql, or set" \
            "CRMKIT_TEST_POSTGRES_URL to a server of yours, or CRMKIT_POSTGRES=none to skip" \
            "the PostgreSQL tests." || return 1
        sudo=(sudo)
    fi
    command -v apt-get >/dev/null 2>&1 || _crmkit_pg_fail \
        "the PostgreSQL server is not installed and there is no apt-get to install it." \
        "Install PostgreSQL, or set CRMKIT_TEST_POSTGRES_URL to a server of yours, or" \
        "CRMKIT_POSTGRES=none to skip the PostgreSQL tests." || return 1
    _crmkit_pg_step "installing the PostgreSQL server (apt-get install postgresql${sudo[*]:+, with sudo})"
    "${sudo[@]}" apt-get update -q || _crmkit_pg_fail \
        "apt-get update failed${sudo[*]:+ (through sudo: does sudo work for you?)}" || return 1
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends postgresql || _crmkit_pg_fail \
        "apt-get install postgresql failed${sudo[*]:+ (through sudo: does sudo work for you?)}" \
        || return 1
}

_crmkit_pg_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

_crmkit_pg_main() {
    case ${CRMKIT_POSTGRES:-} in
    none)
        _crmkit_pg_step "no PostgreSQL server (CRMKIT_POSTGRES=none): the PostgreSQL tests skip"
        return 0
        ;;
    '' | auto) ;;
    *)
        _crmkit_pg_fail "CRMKIT_POSTGRES=$CRMKIT_POSTGRES: the only value it takes is none" \
            "(no server; the PostgreSQL tests skip)"
        return 1
        ;;
    esac
    if [ -n "${CRMKIT_TEST_POSTGRES_URL:-}" ]; then
        _crmkit_pg_step "PostgreSQL tests use the server of CRMKIT_TEST_POSTGRES_URL"
        return 0
    fi

    local bin
    if ! bin=$(_crmkit_pg_find_bin); then
        _crmkit_pg_install || return 1
        bin=$(_crmkit_pg_find_bin) || _crmkit_pg_fail \
            "installed the postgresql package, yet found no initdb/pg_ctl in" \
            "/usr/lib/postgresql/*/bin" || return 1
    fi
    _CRMKIT_PG_BIN=$bin
    local version=${bin%/bin}
    version=${version##*/}

    if [ "$EUID" -eq 0 ]; then
        command -v runuser >/dev/null 2>&1 || _crmkit_pg_fail \
            "running as root, PostgreSQL must run as the postgres user, and runuser" \
            "(util-linux) is missing" || return 1
        if ! id -u postgres >/dev/null 2>&1; then
            useradd --system --user-group --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin postgres ||
                _crmkit_pg_fail "could not create the system user postgres" || return 1
        fi
    fi

    # From here on the EXIT trap owns the directory, so any failure below cleans up.
    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/crmkit-pg.XXXXXX") ||
        _crmkit_pg_fail "mktemp -d failed" || return 1
    _CRMKIT_PG_DIR=$dir
    _crmkit_pg_trap
    if [ "$EUID" -eq 0 ]; then
        chown postgres: "$dir" || _crmkit_pg_fail "could not chown $dir to postgres" || return 1
        runuser -u postgres -- test -w "$dir" || _crmkit_pg_fail \
            "the postgres user cannot write to $dir (set TMPDIR to a directory it can reach)" ||
            return 1
    fi

    local port
    port=$(_crmkit_pg_free_port) || _crmkit_pg_fail "python3 found no free port" || return 1
    _crmkit_pg_step "starting a throwaway PostgreSQL $version on 127.0.0.1:$port"

    local locale=(--locale=C.UTF-8)
    if ! locale -a 2>/dev/null | grep -Eix 'c\.utf-?8' >/dev/null; then
        locale=(--no-locale)
    fi
    if ! _crmkit_pg_as_owner "$bin/initdb" -D "$dir/data" --auth=trust -U crmkit \
        --encoding=UTF8 "${locale[@]}" >"$dir/initdb.log" 2>&1; then
        cat -- "$dir/initdb.log" >&2
        _crmkit_pg_fail "initdb failed (its output is above)"
        return 1
    fi

    # The port was free a moment ago; another process may take it first, so retry.
    local attempt
    for attempt in 1 2 3; do
        if _crmkit_pg_as_owner "$bin/pg_ctl" start -w -s -D "$dir/data" -l "$dir/log" \
            -o "-c listen_addresses=127.0.0.1 -p $port -k '$dir' -c fsync=off \
-c synchronous_commit=off -c full_page_writes=off"; then
            break
        fi
        if [ "$attempt" -lt 3 ] && grep -q 'could not bind' "$dir/log" 2>/dev/null; then
            port=$(_crmkit_pg_free_port) || _crmkit_pg_fail "python3 found no free port" ||
                return 1
            printf 'port taken meanwhile; retrying on 127.0.0.1:%s\n' "$port"
            : >"$dir/log"
            continue
        fi
        _crmkit_pg_fail "the throwaway PostgreSQL $version did not start"
        return 1
    done

    "$bin/createdb" -h 127.0.0.1 -p "$port" -U crmkit crmkit_test ||
        _crmkit_pg_fail "createdb crmkit_test failed" || return 1

    export CRMKIT_TEST_POSTGRES_URL="postgresql+psycopg://crmkit@127.0.0.1:$port/crmkit_test"
    export CRMKIT_REQUIRE_POSTGRES=1
}

# Last command: its status is the status of `source`, so a failure stops scripts/test.
# (Called plainly, never in an `||` or `if`, which would switch off set -e inside it.)
_crmkit_pg_main
