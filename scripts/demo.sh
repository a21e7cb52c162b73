#!/usr/bin/env bash
# The demo: Portcullis in front of a sample app, with a real OpenID Provider,
# all on this machine. Ctrl-C stops everything.
#
#   identity provider  http://127.0.0.1:9000  tests/idp (oidc-provider): any user
#                                             name and password log in; "alice"
#                                             and "bob" have emails and groups
#   sample app         http://127.0.0.1:3000  demo/src/main.rs: shows what it receives
#   Portcullis         http://127.0.0.1:8080  the repo's gateway.toml  <- open this
#
# Secrets are generated for the run (PORTCULLIS_SECRET, PORTCULLIS_CLIENT_SECRET;
# set them beforehand to choose your own).
set -euo pipefail
cd "$(dirname "$0")/.."

GATEWAY=http://127.0.0.1:8080 IDP_PORT=9000 APP_LISTEN=127.0.0.1:3000

log() { printf 'demo: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[[ -f gateway.toml ]] || die "gateway.toml not found in $(pwd)"
command -v node >/dev/null || die "node is needed for the identity provider (tests/idp)"
for port in 9000 3000 8080; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port on 127.0.0.1 is taken; stop what uses it and run again"
    fi
done

# --- processes ---------------------------------------------------------------
logs=$(mktemp -d /tmp/portcullis-demo.XXXXXX)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    log "stopped (logs kept in $logs)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log_of() { if [[ $1 == portcullis ]]; then echo "its output above"; else echo "$logs/$1.log"; fi; }

# wait_port PORT PID NAME: until PORT accepts connections; dies if PID exits.
wait_port() {
    local port=$1 pid=$2 name=$3 i
    for i in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || die "$name exited; see $(log_of "$name")"
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    die "$name did not listen on port $port; see $(log_of "$name")"
}

# --- build -------------------------------------------------------------------
log "building Portcullis and the sample app (release; the first build takes a few minutes)"
# The sample app is its own package (demo/), so this builds the gateway's
# dependencies and nothing of the test suite's.
cargo build --release -p portcullis --bin portcullis -p portcullis-demo --bin echo
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')

if [[ ! -d tests/idp/node_modules ]]; then
    log "installing the identity provider (npm ci in tests/idp)"
    npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
fi

export PORTCULLIS_SECRET=${PORTCULLIS_SECRET:-$(head -c 32 /dev/urandom | base64 | tr -d '\n')}
export PORTCULLIS_CLIENT_SECRET=${PORTCULLIS_CLIENT_SECRET:-$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')}

# --- identity provider -------------------------------------------------------
# tests/idp/provider.js: IDP_PORT picks the port, IDP_CLIENTS registers
# clients; the issuer is http://127.0.0.1:IDP_PORT (gateway.toml's [oidc] issuer).
# IDP_AUTO_SUBMIT_LOGOUT=1 makes its end-session confirmation submit itself,
# so the demo's silent and popup logout buttons complete without a click
# inside a hidden frame (a real IdP may ask; then they fall back to redirect).
start_idp() {
    local client_id
    client_id=$(sed -n 's/^[[:space:]]*client_id[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' gateway.toml | head -n 1)
    IDP_AUTO_SUBMIT_LOGOUT=1 IDP_PORT=$IDP_PORT IDP_CLIENTS="[{
        \"client_id\": \"${client_id:-portcullis}\",
        \"client_secret\": \"$PORTCULLIS_CLIENT_SECRET\",
        \"redirect_uris\": [\"$GATEWAY/.portcullis/callback\"],
        \"post_logout_redirect_uris\": [\"$GATEWAY/.portcullis/logout/done\"],
        \"backchannel_logout_uri\": \"$GATEWAY/.portcullis/backchannel-logout\",
        \"backchannel_logout_session_required\": true,
        \"grant_types\": [\"authorization_code\", \"refresh_token\"]
    }]" node tests/idp/provider.js >"$logs/idp.log" 2>&1 &
    pids+=($!)
    wait_port "$IDP_PORT" $! idp
}
start_idp

# --- sample app and gateway --------------------------------------------------
"$target/release/echo" --listen "$APP_LISTEN" >"$logs/app.log" 2>&1 &
pids+=($!)
wait_port "${APP_LISTEN##*:}" $! app

# The gateway logs to this terminal.
"$target/release/portcullis" --config gateway.toml --log-format pretty &
pids+=($!)
wait_port 8080 $! portcullis

cat <<MSG

  Portcullis is running. Open  $GATEWAY/

  Log in with any user name and password ("alice" has an email and groups).
  The page shows the identity headers the app receives.
  Log out with the page's button or at $GATEWAY/logout.

  Gateway logs below; IdP and app logs in $logs.  Ctrl-C stops everything.

MSG

# Stop everything as soon as one of the three exits.
wait -n "${pids[@]}"
log "a process exited; stopping"
