#!/usr/bin/env bash
# Soak: Portcullis for a long time at about 80% of its saturation with a mix
# of traffic, recording errors and the gateway's RSS over time (not in CI).
#   - proxied requests on a session route (h2load at a fixed rate, ~80% of the
#     saturation measured first, with a session cookie from a real login);
#   - logins and logouts in every mode (redirect, silent, popup, local),
#     each logout through the IdP's confirmation, which also sends the
#     gateway a back-channel logout token (bench/soak_driver.py);
#   - anonymous junk: double-encoded paths, anonymous logouts with an 8 KB
#     return_to, forged back-channel tokens, bad WebSocket handshakes.
# An error is a connection failure, a 5xx or any answer a flow does not
# expect. 0 errors and a flat RSS are the bar.
#
# usage: bench/soak.sh [--duration 30m] [--interval 60s] [--connections 16]
#                      [--out bench/soak-results.md] [--chart bench/soak-rss.svg]
# PORTCULLIS_BIN=path skips the release build. Everything listens on
# 127.0.0.1 only; every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=30m interval=60s connections=16 out=bench/soak-results.md chart=bench/soak-rss.svg
while (($#)); do
    case $1 in
        --duration) duration=$2 ;;
        --interval) interval=$2 ;;
        --connections) connections=$2 ;;
        --out) out=$2 ;;
        --chart) chart=$2 ;;
        -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "soak: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift 2
done
seconds() { # 30m / 90s / 1h -> seconds
    local v=$1
    case $v in
        *h) echo $((${v%h} * 3600)) ;;
        *m) echo $((${v%m} * 60)) ;;
        *s) echo "${v%s}" ;;
        *) echo "$v" ;;
    esac
}
total=$(seconds "$duration") slice=$(seconds "$interval")
((slice > 0 && total >= slice)) || { echo "soak: --interval must be positive and at most --duration" >&2; exit 2; }

# shellcheck source=bench/lib.sh
source bench/lib.sh
need nginx=nginx-light wrk=wrk h2load=nghttp2-client curl=curl python3=python3 node=nodejs
[[ -d tests/idp/node_modules ]] || die "tests/idp not installed (run scripts/test-deps.sh)"

build_portcullis
start_upstream

# --- the IdP and the gateway ----------------------------------------------------------
port=$(free_port) idp_port=$(free_port)
gw=http://127.0.0.1:$port idp=http://127.0.0.1:$idp_port
IDP_PORT=$idp_port IDP_CLIENTS="[{\"client_id\":\"soak\",\"client_secret\":\"$client_secret\",
    \"redirect_uris\":[\"$gw/.portcullis/callback\"],
    \"post_logout_redirect_uris\":[\"$gw/.portcullis/logout/done\"],
    \"backchannel_logout_uri\":\"$gw/.portcullis/backchannel-logout\",
    \"backchannel_logout_session_required\":true,
    \"grant_types\":[\"authorization_code\",\"refresh_token\"]}]" \
    node tests/idp/provider.js >"$work/idp.out" 2>"$work/idp.err" &
idp_pid=$!
pids+=("$idp_pid")
wait_port "$idp_port" "$idp_pid" || die "the test IdP did not start: $(tail -3 "$work/idp.err")"
start_portcullis soak "$port" "[server]
listen = \"127.0.0.1:$port\"
public_url = \"$gw\"

[oidc]
issuer = \"$idp\"
client_id = \"soak\"
client_secret = \"\${PORTCULLIS_CLIENT_SECRET}\"
scopes = [\"openid\", \"email\", \"profile\", \"offline_access\"]

[session]
secret = \"\${PORTCULLIS_SECRET}\"
cookie_name = \"portcullis\"

[[route]]
prefix = \"/\"
upstream = \"$upstream\"

[logout]
allowed_modes = [\"redirect\", \"silent\", \"popup\", \"local\"]" || die "portcullis did not start"
gw_pid=$started
for _ in $(seq 1 120); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: text/html' "$gw/.portcullis/login") == 302 ]] && break
    sleep 0.25
done
cookie=$(python3 bench/soak_driver.py login "$gw") || die "the first login failed"

# --- saturation, then the pace ------------------------------------------------------------
threads=$((connections < 2 ? connections : 2))
rps_of() { sed -n 's/^Requests\/sec: *//p' "$1" | cut -d. -f1; }
log "measuring saturation (5 s, $connections connections)"
wrk -t"$threads" -c"$connections" -d5s -H "Cookie: portcullis=$cookie" "$gw/" >"$work/saturation.txt"
saturation=$(rps_of "$work/saturation.txt")
((saturation > 0)) || die "no saturation figure: $(cat "$work/saturation.txt")"
target=$((saturation * 8 / 10))
# h2load sends at a fixed rate per connection whatever the answers (wrk's
# delay() counts whole milliseconds, too coarse at tens of thousands a second).
per_conn=$(((target + connections - 1) / connections))
log "saturation $saturation req/s; pacing to ~$target req/s (h2load, $per_conn req/s on each of $connections connections)"

# --- the soak ----------------------------------------------------------------------------------
rss() { ps -o rss= -p "$gw_pid" | tr -d ' '; }
python3 bench/soak_driver.py flows "$gw" "$total" "$slice" >"$work/flows.jsonl" 2>"$work/flows.err" &
driver_pid=$!
pids+=("$driver_pid")
csv=$work/soak.csv
echo "t,rss_kb,proxied,proxied_errors,flow_requests,flow_errors" >"$csv"
echo "0,$(rss),0,0,0,0" >>"$csv"
elapsed=0 proxied_total=0 proxied_errors_total=0
while ((elapsed < total)); do
    h2load --h1 -t"$threads" -c"$connections" --rps="$per_conn" -D"$slice" -H "Cookie: portcullis=$cookie" "$gw/" >"$work/slice.txt" 2>&1 || true
    # "requests: T total, S started, D done, OK succeeded, F failed, E errored, X timeout"
    # "status codes: A 2xx, B 3xx, C 4xx, D 5xx"; anything but a 2xx is an error.
    read -r requests failed < <(sed -n 's/^requests: \([0-9]*\) total.* \([0-9]*\) failed.*/\1 \2/p' "$work/slice.txt")
    read -r ok2xx < <(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$work/slice.txt")
    done_requests=$(sed -n 's/^requests: .* \([0-9]*\) done.*/\1/p' "$work/slice.txt")
    errors=$((${failed:-0} + ${done_requests:-0} - ${ok2xx:-0}))
    elapsed=$((elapsed + slice))
    proxied_total=$((proxied_total + ${requests:-0}))
    proxied_errors_total=$((proxied_errors_total + errors))
    last=$(tail -n 1 "$work/flows.jsonl" 2>/dev/null || true)
    flow_requests=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1] or "{}").get("requests", 0))' "$last")
    flow_errors=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1] or "{}").get("errors", 0))' "$last")
    kill -0 "$gw_pid" 2>/dev/null || die "the gateway died; its log: $(tail -5 "$work/soak.log")"
    echo "$elapsed,$(rss),$proxied_total,$proxied_errors_total,$flow_requests,$flow_errors" >>"$csv"
    log "t=${elapsed}s rss=$(rss) KiB proxied=$proxied_total errors=$proxied_errors_total flows=$flow_requests flow_errors=$flow_errors"
done
wait "$driver_pid" || true
final=$(tail -n 1 "$work/flows.jsonl")

# --- results -----------------------------------------------------------------------------------
python3 - "$csv" "$out" "$chart" "$final" "$saturation" "$target" "$connections" "$duration" "$interval" <<'PY'
import csv, json, os, sys, platform, subprocess
path, out, chart, final, saturation, target, conns, duration, interval = sys.argv[1:]
rows = [{k: int(v) for k, v in r.items()} for r in csv.DictReader(open(path))]
final = json.loads(final or "{}")

# The chart: RSS (MiB) over time, errors as red marks on the time axis.
W, H, L, B = 640, 280, 60, 40
tmax = max(r["t"] for r in rows) or 1
rss = [r["rss_kb"] / 1024 for r in rows]
top = max(rss) * 1.2 or 1
x = lambda t: L + (W - L - 20) * t / tmax
y = lambda v: H - B - (H - B - 20) * v / top
pts = " ".join(f"{x(r['t']):.1f},{y(v):.1f}" for r, v in zip(rows, rss))
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<line x1="{L}" y1="{H-B}" x2="{W-20}" y2="{H-B}" stroke="black"/>',
       f'<line x1="{L}" y1="20" x2="{L}" y2="{H-B}" stroke="black"/>',
       f'<text x="{W/2}" y="{H-8}" text-anchor="middle">time (s)</text>',
       f'<text x="14" y="{(H-B)/2}" transform="rotate(-90 14 {(H-B)/2})" text-anchor="middle">gateway RSS (MiB)</text>']
for i in range(5):
    v = top * i / 4
    svg.append(f'<text x="{L-6}" y="{y(v)+4:.1f}" text-anchor="end">{v:.0f}</text>')
    svg.append(f'<line x1="{L}" y1="{y(v):.1f}" x2="{W-20}" y2="{y(v):.1f}" stroke="#ddd"/>')
for i in range(5):
    t = tmax * i / 4
    svg.append(f'<text x="{x(t):.1f}" y="{H-B+14}" text-anchor="middle">{t:.0f}</text>')
svg.append(f'<polyline fill="none" stroke="#2060c0" stroke-width="2" points="{pts}"/>')
prev = 0
for r in rows:
    errs = r["proxied_errors"] + r["flow_errors"]
    if errs > prev:
        svg.append(f'<line x1="{x(r["t"]):.1f}" y1="{H-B}" x2="{x(r["t"]):.1f}" y2="{H-B-8}" stroke="red" stroke-width="2"/>')
    prev = errs
svg.append("</svg>")
open(chart, "w").write("\n".join(svg) + "\n")

errors = rows[-1]["proxied_errors"] + final.get("errors", rows[-1]["flow_errors"])
growth = (rows[-1]["rss_kb"] - rows[1]["rss_kb"]) / 1024 if len(rows) > 1 else 0
# The trend of the second half (least squares, MiB per minute): by then the
# 10-minute states (login and logout states, jti claims) have turned over.
late = [r for r in rows if r["t"] >= rows[-1]["t"] / 2]
mt = sum(r["t"] for r in late) / len(late)
mv = sum(r["rss_kb"] for r in late) / len(late)
den = sum((r["t"] - mt) ** 2 for r in late)
trend = sum((r["t"] - mt) * (r["rss_kb"] - mv) for r in late) / den * 60 / 1024 if den else 0.0
lines = [
    "# Soak results",
    "",
    f"`bench/soak.sh --duration {duration} --interval {interval} --connections {conns}` on "
    f"{platform.node()} ({os.cpu_count()} CPUs), {subprocess.run(['date', '-u', '+%Y-%m-%d %H:%M UTC'], capture_output=True, text=True).stdout.strip()}.",
    "",
    f"Saturation (session route, 5 s): {saturation} req/s; paced to about {target} req/s.",
    f"Flows: {final.get('cycles', 0)} cycles of login, page, logout (modes in turn) and anonymous junk; "
    f"{final.get('requests', 0)} requests.",
    "",
    f"**Errors: {errors}** (proxied {rows[-1]['proxied_errors']}, flows {final.get('errors', 0)})"
    + (f"; last flow error: `{final.get('last_error')}`" if final.get("last_error") else "") + ".",
    f"**RSS growth after the first interval: {growth:+.1f} MiB** "
    f"({rows[1]['rss_kb'] / 1024 if len(rows) > 1 else 0:.1f} → {rows[-1]['rss_kb'] / 1024:.1f} MiB); "
    f"second half: {min(r['rss_kb'] for r in late) / 1024:.1f}–{max(r['rss_kb'] for r in late) / 1024:.1f} MiB, "
    f"trend {trend:+.2f} MiB per minute.",
    "",
    f"![RSS over time]({os.path.basename(chart)})",
    "",
    "| t (s) | RSS (MiB) | proxied requests | proxied errors | flow requests | flow errors |",
    "|---:|---:|---:|---:|---:|---:|",
]
for r in rows:
    lines.append(f"| {r['t']} | {r['rss_kb'] / 1024:.1f} | {r['proxied']} | {r['proxied_errors']} | "
                 f"{r['flow_requests']} | {r['flow_errors']} |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines[:10]))
PY
log "results in $out, chart in $chart"
