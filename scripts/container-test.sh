#!/usr/bin/env bash
# The container image end to end (not part of the default test suite: the
# first run builds a release binary and a base image, several minutes):
#
#   scripts/container-test.sh
#
# 1. installs podman, runc and mmdebstrap when missing (apt-get);
# 2. makes a local base image, localhost/debian:bookworm-slim, from Debian's
#    own packages (mmdebstrap), unless it exists: no registry is needed;
# 3. builds target/release/portcullis (cargo build --release) when missing or
#    older than the sources, and the image from deploy/Dockerfile with
#    BINARY=prebuilt and BASE_IMAGE=localhost/debian:bookworm-slim;
# 4. starts the demo IdP (tests/idp) and a small upstream that echoes the
#    headers it receives, then runs the README's `podman run` line (with
#    `--network host` for `-p 8080:8080`, so the gateway in the container
#    and curl on the host reach the IdP under the same issuer URL);
# 5. checks the image's HEALTHCHECK, logs in as alice with curl (a cookie jar
#    following the IdP's login and consent forms), sees the identity headers
#    at the upstream, logs out through the IdP (RP-initiated) and checks the
#    session is gone; then runs `check` with the secrets as files under
#    /run/secrets, read by the image's unprivileged user;
# 6. runs the README line exactly as written (bridge network, -p 8080:8080)
#    when ports 8080 and 9090 are free here: the gateway answers through the
#    mapped port and the HEALTHCHECK passes with the image's default URL.
#
# The image is tagged `portcullis`, as the README builds it. Environment:
# GATEWAY_PORT (18080),
# ADMIN_PORT (19090), IDP_PORT (19000), APP_PORT (13000), KEEP=1 keeps the
# work directory. Exit status 0 when every step passed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

IMAGE=portcullis   # the name the README uses
BASE=localhost/debian:bookworm-slim
GATEWAY_PORT=${GATEWAY_PORT:-18080} ADMIN_PORT=${ADMIN_PORT:-19090}
IDP_PORT=${IDP_PORT:-19000} APP_PORT=${APP_PORT:-13000}
GATEWAY=http://127.0.0.1:$GATEWAY_PORT
IDP=http://127.0.0.1:$IDP_PORT

log() { printf 'container-test: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
pass() { log "ok: $*"; }

# --- tools -------------------------------------------------------------------
missing=()
for pair in podman:podman runc:runc mmdebstrap:mmdebstrap curl:curl python3:python3 node:nodejs; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    sudo=()
    ((EUID == 0)) || sudo=(sudo)
    log "installing ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

work=$(mktemp -d /tmp/portcullis-container.XXXXXX)
# Without an empty default_ulimits every container fails on setrlimit here.
printf '[containers]\ndefault_ulimits = []\n' >"$work/containers.conf"
export CONTAINERS_CONF=$work/containers.conf
podman=(podman --runtime runc --cgroup-manager cgroupfs)

pids=()
cleanup() {
    local status=$?
    if [[ -n ${container:-} ]]; then
        "${podman[@]}" stop -t 5 "$container" >/dev/null 2>&1 || true
    fi
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if ((status != 0)); then
        for f in gateway idp app; do
            [[ -s $work/$f.log ]] && { log "--- $f.log (last 30 lines)"; tail -n 30 "$work/$f.log" >&2; }
        done
    fi
    if [[ -n ${KEEP:-} ]]; then log "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

for port in "$GATEWAY_PORT" "$ADMIN_PORT" "$IDP_PORT" "$APP_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port on 127.0.0.1 is taken; set GATEWAY_PORT/ADMIN_PORT/IDP_PORT/APP_PORT"
    fi
done

# --- base image and binary ---------------------------------------------------
if ! "${podman[@]}" image exists "$BASE"; then
    log "making $BASE with mmdebstrap (about a minute)"
    mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm "$work/base.tar"
    "${podman[@]}" import --quiet "$work/base.tar" "$BASE" >/dev/null
    rm -f "$work/base.tar"
fi
binary=target/release/portcullis
if [[ ! -x $binary || -n $(find src Cargo.toml Cargo.lock -newer "$binary" -print -quit) ]]; then
    log "building the release binary (fat LTO: several minutes)"
    cargo build --release --locked --bin portcullis
fi

log "building $IMAGE from deploy/Dockerfile (BINARY=prebuilt)"
"${podman[@]}" build --quiet --network host --format docker \
    --build-arg BINARY=prebuilt --build-arg BASE_IMAGE="$BASE" \
    -f deploy/Dockerfile -t "$IMAGE" . >/dev/null
user=$("${podman[@]}" image inspect --format '{{.Config.User}}' "$IMAGE")
[[ $user != "" && $user != root && $user != 0* ]] && pass "image runs as $user" || die "image user is '$user'"

# --- IdP and upstream --------------------------------------------------------
export PORTCULLIS_SECRET PORTCULLIS_CLIENT_SECRET
PORTCULLIS_SECRET=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
PORTCULLIS_CLIENT_SECRET=$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')

[[ -d tests/idp/node_modules ]] || npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
IDP_PORT=$IDP_PORT IDP_CLIENTS="[{
    \"client_id\": \"portcullis\",
    \"client_secret\": \"$PORTCULLIS_CLIENT_SECRET\",
    \"redirect_uris\": [\"$GATEWAY/.portcullis/callback\"],
    \"post_logout_redirect_uris\": [\"$GATEWAY/.portcullis/logout/done\"],
    \"backchannel_logout_uri\": \"$GATEWAY/.portcullis/backchannel-logout\",
    \"backchannel_logout_session_required\": true,
    \"grant_types\": [\"authorization_code\", \"refresh_token\"]
}]" node tests/idp/provider.js >"$work/idp.log" 2>&1 &
pids+=($!)

# The upstream answers every GET with the request headers it received.
python3 - "$APP_PORT" >"$work/app.log" 2>&1 <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("path: %s\n%s" % (self.path, self.headers)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
HTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
PY
pids+=($!)

wait_port() {
    local port=$1 what=$2 i
    for i in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    die "$what did not listen on port $port"
}
wait_port "$IDP_PORT" IdP
wait_port "$APP_PORT" upstream

# --- the gateway, started with the README's line -----------------------------
cd "$work"
cat >gateway.toml <<EOF
[server]
listen = "0.0.0.0:$GATEWAY_PORT"
public_url = "$GATEWAY"
admin_listen = "127.0.0.1:$ADMIN_PORT"

[oidc]
issuer = "$IDP"
client_id = "portcullis"
client_secret = "\${PORTCULLIS_CLIENT_SECRET}"
scopes = ["openid", "email", "profile"]

[session]
secret = "\${PORTCULLIS_SECRET}"
store = "memory"

[[route]]
prefix = "/"
upstream = "http://127.0.0.1:$APP_PORT"

[headers]
user = "X-Forwarded-User"
email = "X-Forwarded-Email"
groups = "X-Forwarded-Groups"

[logout]
mode = "redirect"
EOF

# The README's block after "<!-- container-run -->", continuation lines joined.
line=$(awk '/<!-- container-run -->/ {found=1; next}
            found && /^```/ {if (inblock) exit; inblock=1; next}
            inblock {print}' "$repo/README.md" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta')
[[ $line == podman\ run* ]] || die "no podman run line after <!-- container-run --> in README.md"
# On this machine: host networking instead of the port mapping (see above),
# and the admin port chosen here.
here=${line/-p 8080:8080/--network host -e PORTCULLIS_PROBE_URL=http://127.0.0.1:$ADMIN_PORT/healthz}
here=${here/podman run/${podman[*]} run}
[[ $here != "$line" ]] || die "the README line has no -p 8080:8080 to replace"
log "running: $line"
eval "$here" >"$work/gateway.log" 2>&1 &
pids+=($!)
wait_port "$GATEWAY_PORT" gateway
container=portcullis   # the README line's --name
"${podman[@]}" container exists "$container" || die "no running container named $container"
pass "the README's podman run line starts the gateway"

for i in $(seq 30); do
    "${podman[@]}" healthcheck run "$container" >/dev/null 2>&1 && break
    ((i < 30)) || die "the image's HEALTHCHECK does not pass"
    sleep 1
done
pass "HEALTHCHECK (portcullis probe) passes"
[[ $("${podman[@]}" exec "$container" id -u) != 0 ]] && pass "the gateway runs as a non-root user" || die "runs as root"
"${podman[@]}" exec "$container" portcullis check >/dev/null 2>&1 \
    && pass "portcullis check on the running container's own config: ok" \
    || die "portcullis check in the running container fails"

# --- log in and out with curl ------------------------------------------------
jar=$work/cookies
# request URL [curl args]: one request with the cookie jar; sets status,
# location (absolute) and body.
request() {
    local url=$1
    shift
    status=$(curl -sS --max-time 10 -b "$jar" -c "$jar" -D "$work/headers" -o "$work/body" -w '%{http_code}' "$@" "$url")
    location=$(tr -d '\r' <"$work/headers" | sed -n 's/^[Ll]ocation: *//p' | tail -n 1)
    if [[ $location == /* ]]; then
        location=$(printf '%s' "$url" | sed -E 's#^(https?://[^/]+).*#\1#')$location
    fi
    body=$(cat "$work/body")
}
# form_fields: the hidden inputs of the page's first form, as curl -d args.
form_fields() {
    { grep -o '<input type="hidden" name="[^"]*" value="[^"]*"' <<<"$body" || true; } \
        | sed -E 's/.*name="([^"]*)" value="([^"]*)"/--data-urlencode\n\1=\2/'
}
# form_action: the first form's action, empty when the page has none.
form_action() { { grep -o '<form[^>]*action="[^"]*"' <<<"$body" || true; } | head -n 1 | sed -E 's/.*action="([^"]*)"/\1/'; }
# browse URL MODE [curl args]: follows redirects and fills the IdP's forms
# (MODE login: log in as alice and consent; MODE logout: confirm the
# sign-out and stop at the next login form). Leaves the last page in body.
browse() {
    local url=$1 mode=$2 step
    shift 2
    request "$url" "$@"
    for step in $(seq 30); do
        if [[ $status == 30? ]]; then
            url=$location
            request "$url" -H 'Accept: text/html'
            continue
        fi
        [[ $status == 200 ]] || die "$url answered $status: $body"
        local action
        action=$(form_action)
        [[ -n $action ]] || return 0
        [[ $action == /* ]] && action=$IDP$action
        mapfile -t fields < <(form_fields)
        if grep -q 'name="prompt" value="login"' <<<"$body"; then
            [[ $mode == login ]] || return 0
            request "$action" -X POST "${fields[@]}" --data-urlencode login=alice --data-urlencode password=any
        elif grep -q 'name="prompt" value="consent"' <<<"$body"; then
            request "$action" -X POST "${fields[@]}"
        elif grep -q 'op.logoutForm' <<<"$body"; then
            request "$action" -X POST "${fields[@]}" --data-urlencode logout=yes
        else
            return 0
        fi
        url=$action
    done
    die "no end after 30 steps at $url"
}

browse "$GATEWAY/" login -H 'Accept: text/html' -H 'Sec-Fetch-Mode: navigate' -H 'Sec-Fetch-Site: none'
grep -qi '^X-Forwarded-User: alice' <<<"$body" && grep -q '^path: /$' <<<"$body" \
    || die "after login the upstream did not see alice: $body"
pass "logged in as alice through the IdP; the upstream sees X-Forwarded-User: alice"
grep -q -i '^X-Forwarded-Email: alice@' <<<"$body" && pass "and X-Forwarded-Email" || die "no email header: $body"

request "$GATEWAY/" -H 'Accept: application/json'
[[ $status == 200 ]] || die "the session does not hold: $status"

browse "$GATEWAY/logout" logout -X POST -H 'Accept: text/html' -H "Origin: $GATEWAY"
grep -q 'name="prompt" value="login"' <<<"$body" \
    || die "after logout the IdP did not ask for a login again: $body"
pass "logged out through the IdP (RP-initiated); the IdP asks for a login again"
request "$GATEWAY/" -H 'Accept: application/json'
[[ $status == 401 ]] && pass "the gateway session is gone (401 for a JSON client)" || die "still $status after logout"

# --- secrets as files --------------------------------------------------------
# Stopped first, so this check binds the addresses itself.
"${podman[@]}" stop -t 10 "$container" >/dev/null
container=
mkdir -m 0755 secrets
printf '%s' "$PORTCULLIS_SECRET" >secrets/session-secret
printf '%s' "$PORTCULLIS_CLIENT_SECRET" >secrets/client-secret
chmod 0644 secrets/*
sed -e 's#^client_secret = .*#client_secret_file = "/run/secrets/client-secret"#' \
    -e 's#^secret = .*#secret_file = "/run/secrets/session-secret"#' gateway.toml >gateway-files.toml
out=$("${podman[@]}" run --rm --read-only --network host \
    -v "$work/gateway-files.toml:/etc/portcullis/gateway.toml:ro" \
    -v "$work/secrets:/run/secrets:ro" "$IMAGE" check 2>&1) \
    || die "check with secrets as files failed: $out"
pass "secrets as files under /run/secrets: check ok"

# --- the README line exactly as written ---------------------------------------
# Bridge networking and -p 8080:8080, as a user runs it. The IdP is out of
# reach from the container's network, so this gateway serves one open route
# to an address where nothing listens: the 502 comes from the gateway itself.
if (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null || (exec 3<>/dev/tcp/127.0.0.1/9090) 2>/dev/null; then
    log "skipped: the README line as written (ports 8080/9090 on this host are taken)"
else
    mkdir literal
    printf '%s\n' '[server]' 'listen = "0.0.0.0:8080"' 'public_url = "http://127.0.0.1:8080"' \
        'admin_listen = "127.0.0.1:9090"' '' '[[route]]' 'prefix = "/"' \
        'upstream = "http://127.0.0.1:9"' 'auth = "none"' >literal/gateway.toml
    (cd literal && eval "${line/podman run/${podman[*]} run}" >"$work/literal.log" 2>&1) &
    pids+=($!)
    container=portcullis
    wait_port 8080 "the README line's gateway"
    status=$(curl -s -o /dev/null --max-time 10 -w '%{http_code}' http://127.0.0.1:8080/)
    [[ $status == 502 ]] || die "through -p 8080:8080 the gateway answered $status, not 502"
    for i in $(seq 30); do
        "${podman[@]}" healthcheck run "$container" >/dev/null 2>&1 && break
        ((i < 30)) || die "the HEALTHCHECK does not pass with the image's default probe URL"
        sleep 1
    done
    pass "the README line as written (-p 8080:8080): served through the mapped port; HEALTHCHECK passes"
    "${podman[@]}" stop -t 10 "$container" >/dev/null
    container=
fi

log "PASSED"
