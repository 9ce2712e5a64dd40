# shellcheck shell=bash
# Headless Chromium for the report's browser test (tests/test_cli.py), sourced by
# scripts/test (not run).
#
# - CRMKIT_BROWSER=none: install nothing; the browser test skips.
# - Otherwise: use `chromium` (or `chromium-browser`) from PATH, installing the Debian
#   package `chromium` when it is missing (as root, or through sudo), and export
#       CRMKIT_REQUIRE_BROWSER=1   (the browser test fails rather than skips)
#       CRMKIT_ARTIFACTS=<repo>/artifacts   (unless set: where the test saves
#                                            report-screenshot.png for CI to keep)
# Every failure returns non-zero (which stops scripts/test under set -e) after saying why.

_crmkit_browser_step() { printf '\n==> %s\n' "$*"; }

_crmkit_browser_fail() {
    printf 'error: %s\n' "$*" >&2
    return 1
}

_crmkit_browser_install() {
    local -a sudo=()
    if [ "$EUID" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || _crmkit_browser_fail \
            "Chromium is not installed, and installing it needs root or sudo (neither is" \
            "available). Install the Debian package chromium, or set CRMKIT_BROWSER=none" \
            "to skip the browser test." || return 1
        sudo=(sudo)
    fi
    command -v apt-get >/dev/null 2>&1 || _crmkit_browser_fail \
        "Chromium is not installed and there is no apt-get to install it. Install" \
        "Chromium, or set CRMKIT_BROWSER=none to skip the browser test." || return 1
    _crmkit_browser_step "installing Chromium (apt-get install chromium${sudo[*]:+, with sudo})"
    "${sudo[@]}" apt-get update -q || _crmkit_browser_fail \
        "apt-get update failed${sudo[*]:+ (through sudo: does sudo work for you?)}" || return 1
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends chromium || _crmkit_browser_fail \
        "apt-get install chromium failed${sudo[*]:+ (through sudo: does sudo work for you?)}" \
        || return 1
}

_crmkit_browser_main() {
    case ${CRMKIT_BROWSER:-} in
    none)
        _crmkit_browser_step "no browser (CRMKIT_BROWSER=none): the report's browser test skips"
        return 0
        ;;
    '' | auto) ;;
    *)
        _crmkit_browser_fail "CRMKIT_BROWSER=$CRMKIT_BROWSER: the only value it takes is none" \
            "(no browser; the browser test skips)"
        return 1
        ;;
    esac
    if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1
    then
        _crmkit_browser_install || return 1
        command -v chromium >/dev/null 2>&1 || _crmkit_browser_fail \
            "installed the chromium package, yet found no chromium on PATH" || return 1
    fi
    export CRMKIT_REQUIRE_BROWSER=1
    export CRMKIT_ARTIFACTS="${CRMKIT_ARTIFACTS:-$PWD/artifacts}"
}

# Last command: its status is the status of `source`, so a failure stops scripts/test.
_crmkit_browser_main
