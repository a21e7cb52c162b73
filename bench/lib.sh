# Shared by bench/run.sh and bench/instructions.sh (sourced, not run):
# tools, a work dir whose processes stop on exit, the upstream, the
# Portcullis build and a logged-in session from the test IdP.
# Everything listens on 127.0.0.1 only.

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# need CMD=PACKAGE...: installs the Debian packages of missing commands.
need() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%=*}" >/dev/null || missing+=("${pair#*=}")
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# --- processes -----------------------------------------------------------------
work=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT PID: until PORT accepts connections; fails if PID died.
wait_port() {
    local port=$1 pid=$2 i
    for i in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# A command prefix (e.g. valgrind) that the next start_nginx or
# start_portcullis runs its server under; empty runs it as it is.
wrap=()

# start_nginx NAME CONF_BODY WORKERS: an nginx in the work dir; its pid in
# $started. Under a wrap it runs without a master process, so the pid is
# the one worker's.
start_nginx() {
    local name=$1 body=$2 workers=$3 dir=$work/$1
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<CONF
$( ((EUID == 0)) && echo "user root;")
$( ((${#wrap[@]})) && echo "master_process off;")
daemon off;
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    # nginx closes a keep-alive connection after 1,000 requests by default;
    # h2load does not reconnect (its fixed-rate clients then die and the
    # rate collapses) and wrk pays for new connections: a bench default
    # that measured the closing, not the proxying.
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    $body
}
CONF
    "${wrap[@]}" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
    started=$!
    pids+=("$started")
}

# start_proxy PORT WORKERS: nginx as a plain reverse proxy to the upstream
# (upstream keepalive, HTTP/1.1), the baseline Portcullis is compared with.
start_proxy() {
    start_nginx proxy "
    upstream app { server ${upstream#http://}; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$1;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }" "$2"
    wait_port "$1" "$started" || die "nginx proxy did not start: $(cat "$work/proxy/error.log" "$work/proxy/stdout.log" 2>/dev/null)"
}

# start_upstream: nginx serving a 560-byte static page; sets $upstream (its
# URL) and $up_pid. Two workers (BENCH_UPSTREAM_WORKERS): with one, the
# upstream capped nginx's proxy before the proxy itself did and squeezed
# every ratio toward 1.
start_upstream() {
    mkdir -p "$work/www"
    head -c 512 /dev/zero | tr '\0' 'x' | fold -w 64 | sed '1i <!doctype html><title>bench</title><pre>' >"$work/www/index.html"
    local port
    port=$(free_port)
    start_nginx upstream "server { listen 127.0.0.1:$port; location / { root $work/www; } }" "${BENCH_UPSTREAM_WORKERS:-2}"
    up_pid=$started
    wait_port "$port" "$up_pid" || die "nginx upstream did not start: $(cat "$work/upstream/error.log" "$work/upstream/stdout.log" 2>/dev/null)"
    upstream=http://127.0.0.1:$port
    curl -fsS "$upstream/" -o /dev/null || die "the upstream does not serve index.html"
}

# --- Portcullis -------------------------------------------------------------------
session_secret=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
client_secret=$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')

# build_portcullis: sets $portcullis_bin ($PORTCULLIS_BIN, or a release build).
build_portcullis() {
    portcullis_bin=${PORTCULLIS_BIN:-}
    [[ -n $portcullis_bin ]] && return
    log "building portcullis (release)"
    cargo build --release --quiet --bin portcullis
    local target_dir
    target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    portcullis_bin=$target_dir/release/portcullis
}

# start_portcullis NAME PORT CONFIG: its pid in $started; prints its config and
# output and returns 1 if it does not listen. Runs under the wrap, if any.
start_portcullis() {
    local name=$1 port=$2
    printf '%s\n' "$3" >"$work/$name.toml"
    RUST_LOG=${BENCH_RUST_LOG:-warn} PORTCULLIS_SECRET=$session_secret PORTCULLIS_CLIENT_SECRET=$client_secret \
        "${wrap[@]}" "$portcullis_bin" --config "$work/$name.toml" --log-format json >"$work/$name.log" 2>&1 &
    started=$!
    pids+=("$started")
    if ! wait_port "$port" "$started"; then
        log "portcullis ($name) did not listen on 127.0.0.1:$port; its config and output:"
        sed 's/^/    /' "$work/$name.toml" "$work/$name.log" >&2
        return 1
    fi
}

# start_none PORT: Portcullis with one auth = "none" route to the upstream.
start_none() {
    start_portcullis none "$1" "[server]
listen = \"127.0.0.1:$1\"
public_url = \"http://127.0.0.1:$1\"

[[route]]
prefix = \"/\"
upstream = \"$upstream\"
auth = \"none\""
}

# --- the test IdP and logins ----------------------------------------------------------
# start_idp REDIRECT_URI...: the test IdP (tests/idp) with one client, "bench",
# allowed to return to every given redirect URI (OIDC matches them exactly,
# so every gateway's port is chosen before the IdP starts). Sets $idp (its
# URL); on failure returns 1 with the reason in $skip_reason.
start_idp() {
    skip_reason=
    [[ -f tests/idp/provider.js ]] || { skip_reason="no test IdP (tests/idp/provider.js)"; return 1; }
    [[ -d tests/idp/node_modules ]] || { skip_reason="tests/idp not installed (run scripts/test-deps.sh)"; return 1; }
    local uris idp_port
    uris=$(printf '"%s",' "$@")
    idp_port=$(free_port)
    idp=http://127.0.0.1:$idp_port
    IDP_PORT=$idp_port IDP_CLIENTS="[{\"client_id\":\"bench\",\"client_secret\":\"$client_secret\",
        \"redirect_uris\":[${uris%,}],
        \"grant_types\":[\"authorization_code\",\"refresh_token\"]}]" \
        node tests/idp/provider.js >"$work/idp.out" 2>"$work/idp.err" &
    idp_pid=$!
    pids+=("$idp_pid")
    wait_port "$idp_port" "$idp_pid" || { skip_reason="the test IdP did not start: $(tail -3 "$work/idp.err")"; return 1; }
}

# idp_login NAME START_URL COOKIE_NAME: a login as a browser does it, scripted
# with curl: START_URL (which sends an anonymous visitor to the IdP) → the
# IdP's login form → POST → back to the gateway's callback (sets the
# session cookie) → the page, which must be the upstream's. Sets $cookie
# (the cookie header); on failure returns 1 with the reason in $skip_reason.
idp_login() {
    local name=$1 start=$2 cookie_name=$3 jar=$work/$1.cookies page action code value
    # A gateway may discover the IdP in the background after it starts
    # listening, and answer 503 until then: give it some seconds (more
    # under valgrind).
    for _ in $(seq 1 120); do
        page=$(curl -sS -L -c "$jar" -b "$jar" -H 'Accept: text/html' "$start") ||
            { skip_reason="GET $start failed"; return 1; }
        grep -q 'action="' <<<"$page" && break
        sleep 0.25
    done
    action=$(grep -o 'action="[^"]*"' <<<"$page" | head -n 1 | sed 's/^action="//; s/"$//' || true)
    # oidc-provider's dev login form names an absolute action; accept a path too.
    [[ $action == /* ]] && action=$idp$action
    [[ $action == "$idp"/* ]] || { skip_reason="no IdP login form after $start"; return 1; }
    code=$(curl -sS -L -c "$jar" -b "$jar" -o "$work/$name.page" -w '%{http_code}' -H 'Accept: text/html' \
        -d prompt=login -d login=alice -d password=bench "$action") || { skip_reason="the login POST failed"; return 1; }
    value=$(sed 's/^#HttpOnly_//' "$jar" 2>/dev/null | awk -F '\t' -v n="$cookie_name" '$6 == n { print $7 }' | tail -n 1)
    [[ $code == 200 && -n $value ]] || { skip_reason="the login did not end with a session (HTTP $code)"; return 1; }
    cookie="Cookie: $cookie_name=$value"
}

# check_page URL HEADER: whether URL, requested with HEADER, answers the
# upstream's page.
check_page() {
    curl -fsS -H "$2" "$1" | cmp -s - "$work/www/index.html"
}

# session_toml PORT PUBLIC_URL [SESSION_EXTRA] [SERVER_EXTRA]: a
# configuration with [oidc], [session] and one session route to the
# upstream; the extras (TOML) go at the end of [session] (e.g. the store)
# and of [server].
session_toml() {
    printf '%s\n' "[server]
listen = \"127.0.0.1:$1\"
public_url = \"$2\"
${4:-}

[oidc]
issuer = \"$idp\"
client_id = \"bench\"
client_secret = \"\${PORTCULLIS_CLIENT_SECRET}\"

[session]
secret = \"\${PORTCULLIS_SECRET}\"
cookie_name = \"portcullis\"
${3:-}

[[route]]
prefix = \"/\"
upstream = \"$upstream\""
}

# start_session NAME PORT [SESSION_EXTRA]: Portcullis with a session route
# to the upstream (the IdP must be up, with PORT's callback registered) and
# a logged-in cookie. Sets $session_url, $session_pid and $session_cookie;
# on failure returns 1 with the reason in $skip_reason.
start_session() {
    local name=$1 port=$2 gw=http://127.0.0.1:$2
    start_portcullis "$name" "$port" "$(session_toml "$port" "$gw" "${3:-}")" ||
        { skip_reason="portcullis did not start with [oidc] and [session]"; return 1; }
    session_pid=$started
    idp_login "$name" "$gw/.portcullis/login?return_to=/" portcullis || return 1
    check_page "$gw/" "$cookie" || { skip_reason="the session cookie does not reach the upstream page"; return 1; }
    session_url=$gw/
    session_cookie=$cookie
}
