#!/usr/bin/env bash
# Curl-only smoke test for any running Portcullis deployment.
#
#   GATEWAY_URL=https://app.example.com tests/smoke.sh
#
# Optional: ADMIN_URL=http://127.0.0.1:9090 (checks /healthz and /readyz),
# PROTECTED_PATH=/ (a path on a session route), LOGOUT_PATH=/logout.
# It never logs in and never changes anything: every request is anonymous.
set -u
: "${GATEWAY_URL:?set GATEWAY_URL to the public URL of the gateway}"
GATEWAY_URL=${GATEWAY_URL%/}
PROTECTED_PATH=${PROTECTED_PATH:-/}
LOGOUT_PATH=${LOGOUT_PATH:-/logout}
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

# 4. Logout: no-store, the cookie expired with Max-Age=0.
h=$(head_of "$GATEWAY_URL$LOGOUT_PATH?mode=local" -X POST)
s=$(status_of "$h")
[[ $s == 303 ]] && ok "POST $LOGOUT_PATH from a non-browser client logs out (303)" || fail "POST $LOGOUT_PATH answers 303" "got $s"
[[ $(header_of "$h" cache-control) == no-store ]] && ok "logout response is Cache-Control: no-store" \
    || fail "logout response is Cache-Control: no-store" "$(header_of "$h" cache-control)"
cookie=$(header_of "$h" set-cookie)
[[ $cookie == *Max-Age=0* && $cookie == *HttpOnly* && $cookie == *Path=/* ]] && ok "logout expires the session cookie" \
    || fail "logout expires the session cookie" "$cookie"

# 5. Open redirects are refused: the destination never names another host.
for payload in '//evil.example' '/\evil.example' 'https://evil.example' '/%5Cevil.example' '/%09/evil.example' 'https:evil.example' '/.//evil.example' '/a/..//evil.example'; do
    enc=$(printf '%s' "$payload" | od -An -tx1 | tr -d ' \n' | sed 's/\(..\)/%\1/g')
    loc=$(header_of "$(head_of "$GATEWAY_URL$LOGOUT_PATH?mode=local&return_to=$enc" -X POST)" location)
    [[ -n $loc && $loc != *evil.example* ]] && ok "return_to=$payload is refused ($loc)" || fail "return_to=$payload is refused" "location: $loc"
done

# 6. A cross-site logout attempt is not obeyed.
s=$(status_of "$(head_of "$GATEWAY_URL$LOGOUT_PATH" -X POST -H 'Origin: https://evil.example' -H 'Sec-Fetch-Site: cross-site')")
[[ $s == 403 || $s == 200 ]] && ok "cross-site logout POST is refused ($s)" || fail "cross-site logout POST is refused" "got $s"

# 7. The gateway's own paths never reach the app; logout.js is served.
s=$(status_of "$(head_of "$GATEWAY_URL/.portcullis/no-such-path")")
[[ $s == 404 ]] && ok "/.portcullis/ is reserved" || fail "/.portcullis/ is reserved" "got $s"
h=$(head_of "$GATEWAY_URL/.portcullis/logout.js")
[[ $(status_of "$h") == 200 && $(header_of "$h" content-type) == *javascript* ]] && ok "logout.js is served" \
    || fail "logout.js is served" "$(status_of "$h") $(header_of "$h" content-type)"

echo
echo "smoke: $passed passed, $failed failed"
((failed == 0))
