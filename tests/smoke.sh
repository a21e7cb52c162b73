#!/usr/bin/env bash
# Curl-only smoke test for any running Portcullis deployment.
#
#   GATEWAY_URL=https://app.example.com tests/smoke.sh
#
# Optional: ADMIN_URL=http://127.0.0.1:9090 (checks /healthz and /readyz),
# PROTECTED_PATH=/ (a path on a session route), LOGOUT_PATH=/logout,
# CLEAR_SITE_DATA (the expected header where a logout ends, as
# `[logout] clear_site_data` makes it; default '"storage"', SPEC's default;
# empty when configured []).
# It never logs in and never changes anything: every request is anonymous.
# The checks hold in every logout mode: where a check needs the final
# destination it asks as a JSON client (`return_to` is in every answer).
set -u
: "${GATEWAY_URL:?set GATEWAY_URL to the public URL of the gateway}"
GATEWAY_URL=${GATEWAY_URL%/}
PROTECTED_PATH=${PROTECTED_PATH:-/}
LOGOUT_PATH=${LOGOUT_PATH:-/logout}
CLEAR_SITE_DATA=${CLEAR_SITE_DATA-'"storage"'}
passed=0
failed=0

ok() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$1"; [[ -n ${2:-} ]] && printf '      %s\n' "$2"; }

# head_of URL [curl args...]: status line and headers, lower-cased names.
head_of() {
    local url=$1
    shift
    curl -sS -o /dev/null -D - --max-time 10 "$@" "$url" | tr -d '\r'
}
status_of() { printf '%s\n' "$1" | awk 'NR==1 {print $2}'; }
header_of() { printf '%s\n' "$1" | awk -v h="$2" 'BEGIN {IGNORECASE=1} tolower($0) ~ "^"h":" {sub(/^[^:]*: */, ""); print}'; }

# 1. Health.
if [[ -n ${ADMIN_URL:-} ]]; then
    ADMIN_URL=${ADMIN_URL%/}
    for p in /healthz /readyz; do
        s=$(status_of "$(head_of "$ADMIN_URL$p")")
        [[ $s == 200 ]] && ok "admin $p is 200" || fail "admin $p is 200" "got $s"
    done
fi

# 2. A navigation without a session goes to the IdP with PKCE and state.
h=$(head_of "$GATEWAY_URL$PROTECTED_PATH" -H 'Accept: text/html' -H 'Sec-Fetch-Mode: navigate' -H 'Sec-Fetch-Site: none')
s=$(status_of "$h")
loc=$(header_of "$h" location)
if [[ $s == 302 && $loc != "$GATEWAY_URL"* && $loc == *response_type=code* && $loc == *code_challenge_method=S256* && $loc == *state=* ]]; then
    ok "unauthenticated navigation redirects to the IdP (code + PKCE S256 + state)"
else
    fail "unauthenticated navigation redirects to the IdP" "status $s, location $loc"
fi
[[ $(header_of "$h" set-cookie) == *-login-*HttpOnly* ]] && ok "the login state travels in an HttpOnly cookie" \
    || fail "the login state travels in an HttpOnly cookie" "$(header_of "$h" set-cookie)"

# 3. A JSON client gets 401 with a login URL, never a redirect.
body=$(curl -sS --max-time 10 -H 'Accept: application/json' -w '\n%{http_code}' "$GATEWAY_URL$PROTECTED_PATH")
s=${body##*$'\n'}
[[ $s == 401 && $body == *'"login_url"'* ]] && ok "JSON client gets 401 with login_url" || fail "JSON client gets 401 with login_url" "$body"

# 4. Logout: no-store, the cookie expired with Max-Age=0. Asked as a JSON
# client, so the answer is 200 whatever mode the deployment runs (a browser
# would get a 303, or a 200 page in silent/popup mode).
h=$(head_of "$GATEWAY_URL$LOGOUT_PATH?mode=local" -X POST -H 'Accept: application/json')
s=$(status_of "$h")
[[ $s == 200 ]] && ok "POST $LOGOUT_PATH from a non-browser client logs out (200 JSON)" || fail "POST $LOGOUT_PATH answers 200 to a JSON client" "got $s"
[[ $(header_of "$h" cache-control) == no-store ]] && ok "logout response is Cache-Control: no-store" \
    || fail "logout response is Cache-Control: no-store" "$(header_of "$h" cache-control)"
cookie=$(header_of "$h" set-cookie)
[[ $cookie == *Max-Age=0* && $cookie == *HttpOnly* && $cookie == *Path=/* ]] && ok "logout expires the session cookie" \
    || fail "logout expires the session cookie" "$cookie"

# 5. Open redirects are refused: the final destination is the default one.
# It is read from the JSON answer's return_to, which every mode gives (a
# redirect's Location is the IdP's URL unless the mode is local); the
# Location, whatever it is, must not name the payload's host either.
# json_field JSON NAME: a top-level string field of the gateway's compact JSON.
json_field() { printf '%s' "$1" | sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p"; }
logout_json() { curl -sS --max-time 10 -X POST -H 'Accept: application/json' "$GATEWAY_URL$LOGOUT_PATH$1"; }
default_dest=$(json_field "$(logout_json '')" return_to)
[[ -n $default_dest ]] && ok "a JSON logout names its final destination ($default_dest)" \
    || fail "a JSON logout names its final destination" "$(logout_json '')"
for payload in '//evil.example' '/\evil.example' 'https://evil.example' '/%5Cevil.example' '/%09/evil.example' 'https:evil.example' '/.//evil.example' '/a/..//evil.example'; do
    enc=$(printf '%s' "$payload" | od -An -tx1 | tr -d ' \n' | sed 's/\(..\)/%\1/g')
    dest=$(json_field "$(logout_json "?return_to=$enc")" return_to)
    loc=$(header_of "$(head_of "$GATEWAY_URL$LOGOUT_PATH?return_to=$enc" -X POST)" location)
    if [[ -n $default_dest && $dest == "$default_dest" && $loc != *evil.example* ]]; then
        ok "return_to=$payload is refused (lands on $dest)"
    else
        fail "return_to=$payload is refused" "return_to: $dest (default $default_dest), location: $loc"
    fi
done
dest=$(json_field "$(logout_json '?return_to=%2Fsmoke-signed-out%3Fa%3D1')" return_to)
[[ $dest == '/smoke-signed-out?a=1' ]] && ok "a same-origin return_to is kept" || fail "a same-origin return_to is kept" "got $dest"

# 6. Clear-Site-Data only where the flow ends. A logout that goes on at the
# IdP answers with a continue_url and no Clear-Site-Data; the IdP would then
# send the browser to /logout/done with the state, which ends the flow (this
# script plays the IdP's part by calling /logout/done itself). A logout with
# no IdP leg (local mode, no end-session endpoint) ends right away.
csd_is() { # RESPONSE-HEADERS WHAT
    local got
    got=$(header_of "$1" clear-site-data)
    [[ $got == "$CLEAR_SITE_DATA" ]] && ok "$2 (Clear-Site-Data: ${got:-none})" \
        || fail "$2" "Clear-Site-Data: '${got}', expected '${CLEAR_SITE_DATA}'"
}
hdrs=$(mktemp)
jar=$(mktemp)
trap 'rm -f "$hdrs" "$jar"' EXIT
# The cookie jar plays the browser that logs out: /logout/done clears site
# data only for the browser that started the logout.
body=$(curl -sS --max-time 10 -c "$jar" -D "$hdrs" -X POST -H 'Accept: application/json' "$GATEWAY_URL$LOGOUT_PATH?return_to=%2Fsmoke-signed-out")
h=$(tr -d '\r' <"$hdrs")
cont=$(json_field "$body" continue_url)
if [[ -n $cont ]]; then
    [[ -z $(header_of "$h" clear-site-data) ]] && ok "no Clear-Site-Data on the way to the IdP" \
        || fail "no Clear-Site-Data on the way to the IdP" "$(header_of "$h" clear-site-data)"
    state=${cont##*state=}
    state=${state%%&*}
    done_url="$GATEWAY_URL/.portcullis/logout/done?state=$state"
    h=$(head_of "$done_url" -H 'Accept: text/html' -H 'Sec-Fetch-Mode: navigate' -H 'Sec-Fetch-Dest: document')
    [[ -z $(header_of "$h" clear-site-data) ]] && ok "no Clear-Site-Data for a browser that did not start the logout" \
        || fail "no Clear-Site-Data for a browser that did not start the logout" "$(header_of "$h" clear-site-data)"
    h=$(head_of "$done_url" -b "$jar" -H 'Accept: text/html' -H 'Sec-Fetch-Mode: navigate' -H 'Sec-Fetch-Dest: document')
    s=$(status_of "$h")
    loc=$(header_of "$h" location)
    # 303 to the destination; 200 for a popup logout (the page that closes the popup).
    [[ ($s == 303 && $loc == /smoke-signed-out) || $s == 200 ]] && ok "/logout/done with its state ends the flow ($s $loc)" \
        || fail "/logout/done with its state ends the flow" "status $s, location $loc"
    csd_is "$h" "Clear-Site-Data on the response that ends the flow"
    [[ $(header_of "$h" content-security-policy) == *"frame-ancestors 'self'"* ]] && ok "/logout/done sends its CSP" \
        || fail "/logout/done sends its CSP" "$(header_of "$h" content-security-policy)"
    # This logout ended no session, so its state is sealed and carries its
    # own deadline instead of a single-use record (nothing is stored for an
    # anonymous logout); a state the gateway did not seal goes nowhere else.
    h=$(head_of "${done_url}x")
    loc=$(header_of "$h" location)
    [[ $(status_of "$h") == 303 && $loc == "$default_dest" && -z $(header_of "$h" clear-site-data) ]] \
        && ok "an unknown state goes to the default destination" || fail "an unknown state goes to the default destination" "$(status_of "$h") $loc"
else
    [[ $(json_field "$body" return_to) == /smoke-signed-out ]] && ok "a logout with no IdP leg ends at once" \
        || fail "a logout with no IdP leg ends at once" "$body"
    csd_is "$h" "Clear-Site-Data on the response that ends the flow"
fi

# 7. A cross-site logout attempt is not obeyed.
s=$(status_of "$(head_of "$GATEWAY_URL$LOGOUT_PATH" -X POST -H 'Origin: https://evil.example' -H 'Sec-Fetch-Site: cross-site')")
[[ $s == 403 || $s == 200 ]] && ok "cross-site logout POST is refused ($s)" || fail "cross-site logout POST is refused" "got $s"

# 8. The gateway's own paths never reach the app; logout.js is served.
s=$(status_of "$(head_of "$GATEWAY_URL/.portcullis/no-such-path")")
[[ $s == 404 ]] && ok "/.portcullis/ is reserved" || fail "/.portcullis/ is reserved" "got $s"
h=$(head_of "$GATEWAY_URL/.portcullis/logout.js")
[[ $(status_of "$h") == 200 && $(header_of "$h" content-type) == *javascript* ]] && ok "logout.js is served" \
    || fail "logout.js is served" "$(status_of "$h") $(header_of "$h" content-type)"

echo
echo "smoke: $passed passed, $failed failed"
((failed == 0))
