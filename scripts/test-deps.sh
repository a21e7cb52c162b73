#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian 12 machine; does nothing when
# everything is there already, so it is cheap to run before every test run.
#
#   - Debian packages: redis-server, chromium, chromium-driver, nginx-light,
#     caddy, wrk, curl (apt-get update runs once, and only when one is missing);
#   - npm packages of tests/idp, tests/idp-legacy, tests/browser and tests/jwt-verify, with `npm ci`, when
#     node_modules is missing or was installed from another package-lock.json;
#   - systemd-analyze (package systemd) and, from PyPI into a venv under
#     ${XDG_CACHE_HOME:-~/.cache}/portcullis-test-tools, kubernetes-validate and
#     yamllint, for tests/deploy.rs (the versions are pinned below).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'test-deps: %s\n' "$*"; }

have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# --- Debian packages ---------------------------------------------------------
# Each entry: a command that proves the package is there, and the package.
missing=()
want() {
    local cmd=$1 pkg=$2
    have_cmd "$cmd" || have_pkg "$pkg" || missing+=("$pkg")
}
want redis-server redis-server
# redis-cli (cluster creation, replication checks); Sentinel runs as
# `redis-server --sentinel`, the program Debian's redis-sentinel starts.
want redis-cli    redis-tools
want chromium     chromium
want chromedriver chromium-driver
want nginx        nginx-light   # any Debian nginx flavour will do: all have auth_request
want caddy        caddy         # forward_auth (tests/forward_auth.rs)
want wrk          wrk
want curl         curl
want systemd-analyze systemd
want python3      python3
# The venv module and its pip (Debian splits them out of python3).
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || have_pkg python3-venv || missing+=(python3-venv)
if compgen -G 'tests/*/package-lock.json' >/dev/null; then
    want node nodejs
    want npm  npm
fi

if ((${#missing[@]})); then
    sudo=()
    if ((EUID != 0)); then
        have_cmd sudo || { log "need root (or sudo) to install: ${missing[*]}"; exit 1; }
        sudo=(sudo)
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
    log "installed ${missing[*]}"
fi

# --- npm packages ------------------------------------------------------------
# A checksum of the lock file is kept inside node_modules, so a changed lock
# (a pull, a branch switch) reinstalls and an unchanged one costs nothing.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PUPPETEER_SKIP_DOWNLOAD=1  # Debian's chromium is used
for dir in tests/idp tests/idp-legacy tests/browser tests/jwt-verify; do
    [[ -f $dir/package-lock.json ]] || continue
    stamp=$dir/node_modules/.portcullis-lock.sha256
    sum=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
    if [[ -d $dir/node_modules && -f $stamp && $(<"$stamp") == "$sum" ]]; then
        continue
    fi
    log "npm ci in $dir"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
    mkdir -p "$dir/node_modules"
    printf '%s\n' "$sum" >"$stamp"
done

# --- PyPI tools ----------------------------------------------------------------
# Debian 12 refuses `pip install` into the system Python (PEP 668), so the
# tools live in their own venv; tests/deploy.rs looks for them there (or in
# $PORTCULLIS_TEST_TOOLS). Reinstalled when the pins below change.
pypi=(kubernetes-validate==1.37.0 yamllint==1.38.0)
tools=${PORTCULLIS_TEST_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis-test-tools}
stamp=$tools/venv/.portcullis-pins
if [[ ! -x $tools/venv/bin/kubernetes-validate || ! -f $stamp || $(<"$stamp") != "${pypi[*]}" ]]; then
    log "installing ${pypi[*]} into $tools/venv"
    mkdir -p "$tools"
    python3 -m venv --clear "$tools/venv"
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "${pypi[@]}"
    printf '%s\n' "${pypi[*]}" >"$stamp"
fi

log "all test dependencies present"
