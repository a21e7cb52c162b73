# The other servers bench/run.sh compares Portcullis with, or runs it with
# (sourced after bench/lib.sh): Redis, Apache + mod_auth_openidc and nginx
# `auth_request` in front of Portcullis. Each listens on 127.0.0.1 only and
# stops on exit with the rest.

# start_redis: a standalone redis-server on a free port, nothing persisted;
# sets $redis_url and $redis_pid.
start_redis() {
    local port
    port=$(free_port)
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --dir "$work" --logfile "$work/redis.log" &
    redis_pid=$!
    pids+=("$redis_pid")
    wait_port "$port" "$redis_pid" || die "redis-server did not start: $(tail -3 "$work/redis.log")"
    redis_url=redis://127.0.0.1:$port/0
}

# start_apache PORT: Apache (event MPM) with mod_auth_openidc protecting
# every path, proxying to the upstream with pooled connections, logged in
# at the test IdP (its redirect URI, PORT's /protected/redirect_uri, must be
# registered). Sets $apache_pid, $apache_url and $apache_cookie; on failure
# returns 1 with the reason in $skip_reason.
start_apache() {
    local port=$1 dir=$work/apache mods=/usr/lib/apache2/modules
    apache_url=http://127.0.0.1:$port/
    mkdir -p "$dir"
    # Its children run as www-data and open the mutex files here.
    chmod 711 "$work"
    chmod 777 "$dir"
    cat >"$dir/apache2.conf" <<CONF
ServerRoot $dir
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile $dir/apache2.pid
DefaultRuntimeDir $dir
ErrorLog $dir/error.log
LogLevel warn
User www-data
Group www-data
LoadModule mpm_event_module $mods/mod_mpm_event.so
LoadModule authz_core_module $mods/mod_authz_core.so
LoadModule authn_core_module $mods/mod_authn_core.so
LoadModule authz_user_module $mods/mod_authz_user.so
LoadModule proxy_module $mods/mod_proxy.so
LoadModule proxy_http_module $mods/mod_proxy_http.so
LoadModule auth_openidc_module $mods/mod_auth_openidc.so
# Two processes, enough threads for every connection: no process comes or
# goes during the run, so its CPU time is counted whole.
StartServers 2
ServerLimit 2
ThreadsPerChild 64
MaxRequestWorkers 128
MinSpareThreads 1
MaxSpareThreads 128
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
OIDCProviderMetadataURL $idp/.well-known/openid-configuration
OIDCClientID bench
OIDCClientSecret $client_secret
OIDCRedirectURI http://127.0.0.1:$port/protected/redirect_uri
OIDCCryptoPassphrase $session_secret
OIDCScope "openid email profile"
OIDCPKCEMethod S256
OIDCRemoteUserClaim sub
<Location />
    AuthType openid-connect
    Require valid-user
</Location>
ProxyPass /protected/redirect_uri !
ProxyPass / $upstream/
CONF
    apache2 -f "$dir/apache2.conf" -DFOREGROUND >"$dir/stdout.log" 2>&1 &
    apache_pid=$!
    pids+=("$apache_pid")
    wait_port "$port" "$apache_pid" ||
        { skip_reason="apache2 did not start: $(tail -3 "$dir/error.log" "$dir/stdout.log" 2>/dev/null | tr '\n' ' ')"; return 1; }
    idp_login apache "$apache_url" mod_auth_openidc_session || return 1
    check_page "$apache_url" "$cookie" || { skip_reason="the Apache session cookie does not reach the upstream page"; return 1; }
    apache_cookie=$cookie
}

# start_forward_auth PORT GW_PORT: nginx on PORT proxying to the upstream,
# each request first checked by nginx `auth_request` against Portcullis's
# forward-auth endpoint (/.portcullis/auth) on GW_PORT, which also serves the
# login through it; logged in through nginx. Sets $fa_url, $fa_pids (nginx
# and Portcullis) and $fa_cookie; on failure returns 1 with the reason in
# $skip_reason (a Portcullis without the endpoint answers it 404).
start_forward_auth() {
    local port=$1 gw_port=$2 front=http://127.0.0.1:$1 gw_pid code
    start_portcullis forward-auth "$gw_port" \
        "$(session_toml "$gw_port" "$front" "" 'trusted_proxies = ["127.0.0.1/32"]')" ||
        { skip_reason="portcullis did not start with trusted_proxies"; return 1; }
    gw_pid=$started
    code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$gw_port/.portcullis/auth?mode=401")
    [[ $code != 404 ]] || { skip_reason="this Portcullis has no forward-auth endpoint (/.portcullis/auth answers 404)"; return 1; }
    start_nginx forward-auth "
    upstream app { server ${upstream#http://}; keepalive 64; keepalive_requests 1000000; }
    upstream portcullis { server 127.0.0.1:$gw_port; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$port;
        proxy_http_version 1.1;
        proxy_set_header Connection \"\";
        location = /_auth {
            internal;
            proxy_pass http://portcullis/.portcullis/auth?mode=401;
            proxy_pass_request_body off;
            proxy_set_header Content-Length \"\";
            proxy_set_header Connection \"\";
            proxy_set_header X-Original-URL \$scheme://\$http_host\$request_uri;
        }
        location /.portcullis/ {
            proxy_pass http://portcullis;
            proxy_set_header Host \$http_host;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$http_host;
        }
        location / {
            auth_request /_auth;
            auth_request_set \$user \$upstream_http_x_forwarded_user;
            proxy_pass http://app;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-User \$user;
        }
    }" auto
    wait_port "$port" "$started" || { skip_reason="nginx (auth_request) did not start: $(cat "$work/forward-auth/error.log")"; return 1; }
    fa_pids="$started $gw_pid"
    idp_login forward-auth "$front/.portcullis/login?return_to=/" portcullis || return 1
    check_page "$front/" "$cookie" || { skip_reason="the session cookie does not reach the upstream page through auth_request"; return 1; }
    fa_url=$front/
    fa_cookie=$cookie
}
