#!/usr/bin/env bash
# CPU instructions Portcullis executes per proxied request, counted by
# callgrind: the same figure on a quiet or a busy machine, so it shows what a
# change to the request path costs or saves where req/s cannot (see
# bench/README.md). Targets, as in bench/run.sh:
#   (b) nginx as a plain reverse proxy (one worker, no master process)
#   (c) an auth = "none" route to an nginx upstream
#   (d) an auth = "session" route with a session cookie from a real login at
#       the test IdP (skipped, with a note, when that cannot be done)
#   (e) the same on the Redis store (a redis-server of its own; only
#       Portcullis's instructions are counted)
# Each runs alone under valgrind (which runs one thread at a time; the count
# is the whole process's); instrumentation is switched on after a warm-up, then wrk sends requests for --duration and the
# total is divided by wrk's request count.
#
# usage: bench/instructions.sh [--targets b,c,d,e] [--duration 5s]
#                              [--out bench/instructions.md] [--profiles DIR]
# --profiles keeps each target's callgrind output in DIR, for
# callgrind_annotate.
# PORTCULLIS_BIN=path skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=b,c,d,e duration=5s out=bench/instructions.md profiles=
while (($#)); do
    case $1 in
        --targets) targets=$2 ;;
        --duration) duration=$2 ;;
        --out) out=$2 ;;
        --profiles) profiles=$2 ;;
        -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift 2
done
wants() { [[ ,$targets, == *,$1,* ]]; }

# shellcheck source=bench/lib.sh
source bench/lib.sh
# shellcheck source=bench/peers.sh
source bench/peers.sh
need nginx=nginx-light wrk=wrk curl=curl valgrind=valgrind redis-server=redis-server
start_upstream
build_portcullis

rows=()
notes=()

# count KEY LABEL URL PID [HEADER]: instructions per request of the server
# running under callgrind as PID.
count() {
    local key=$1 label=$2 url=$3 pid=$4 args=() res n total dump
    [[ -n ${5:-} ]] && args=(-H "$5")
    callgrind_control -i on "$pid" >/dev/null
    wrk -t1 -c4 -d3s "${args[@]}" "$url" >/dev/null
    callgrind_control -z "$pid" >/dev/null
    log "($key) $label: wrk -t1 -c4 -d$duration ${args[*]} $url"
    res=$(wrk -t1 -c4 -d"$duration" "${args[@]}" "$url")
    callgrind_control -d "$pid" >/dev/null
    n=$(awk '/ requests in / {print $1}' <<<"$res")
    grep -q 'Non-2xx' <<<"$res" && die "($key) got non-2xx answers: $res"
    # The dump just written: the newest part file of this process.
    dump=$(ls -t "$work/$key.cg".* | head -n 1)
    total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
    [[ -n $n && $n -gt 0 && -n $total ]] || die "($key) nothing counted: $res"
    log "($key) $n requests, $((total / n)) instructions each"
    if [[ -n $profiles ]]; then
        mkdir -p "$profiles"
        cp "$dump" "$profiles/$key.callgrind"
        log "($key) profile: callgrind_annotate --inclusive=yes $profiles/$key.callgrind"
    fi
    rows+=("| ($key) | $label | $n | $((total / n)) |")
}

# under_callgrind KEY: the next server starts under callgrind,
# instrumentation off until count() switches it on.
under_callgrind() {
    wrap=(valgrind --tool=callgrind --instr-atstart=no "--callgrind-out-file=$work/$1.cg")
}

if wants b; then
    under_callgrind b
    port=$(free_port)
    start_proxy "$port" 1
    count b "nginx proxy_pass, keepalive" "http://127.0.0.1:$port/" "$started"
    kill "$started"
fi
if wants c; then
    under_callgrind c
    port=$(free_port)
    start_none "$port" || die "portcullis did not start for (c); see above"
    count c "portcullis, auth = \"none\"" "http://127.0.0.1:$port/" "$started"
    kill "$started"
fi
# (d) and (e) log in at the test IdP, which must know both redirect URIs
# before it starts.
d_port=$(free_port) e_port=$(free_port)
idp_up=
if wants d || wants e; then
    if start_idp "http://127.0.0.1:$d_port/.portcullis/callback" "http://127.0.0.1:$e_port/.portcullis/callback"; then
        idp_up=1
    else
        for key in d e; do wants $key && notes+=("($key) skipped: $skip_reason"); done
    fi
fi
if wants d && [[ -n $idp_up ]]; then
    under_callgrind d
    if start_session d "$d_port"; then
        count d "portcullis, auth = \"session\" (cookie)" "$session_url" "$session_pid" "$session_cookie"
        kill "$session_pid"
    else
        notes+=("(d) skipped: $skip_reason")
        log "(d) skipped: $skip_reason"
    fi
fi
if wants e && [[ -n $idp_up ]]; then
    start_redis
    under_callgrind e
    if start_session e "$e_port" "store = \"redis\"
[session.redis]
url = \"$redis_url\""; then
        count e "portcullis, auth = \"session\" (cookie), Redis store (Portcullis only)" "$session_url" "$session_pid" "$session_cookie"
        kill "$session_pid"
    else
        notes+=("(e) skipped: $skip_reason")
        log "(e) skipped: $skip_reason"
    fi
fi

((${#rows[@]})) || die "nothing was measured (--targets $targets)"
revision=$(git describe --always --dirty --exclude '*' 2>/dev/null || echo unknown)
{
    echo "# Instructions per request"
    echo
    echo "Written by \`bench/instructions.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); see bench/README.md."
    echo
    echo "| | target | requests counted | instructions per request |"
    echo "|---|---|---:|---:|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "- portcullis $revision, release build, default serving threads (valgrind runs one thread at a time; the count is the whole process's), RUST_LOG=${BENCH_RUST_LOG:-warn} (the access log is still written)"
    echo "- load: \`wrk -t1 -c4 -d$duration URL\` after a 3 s warm-up with instrumentation on; counted from callgrind's zeroed counters to its dump"
    echo "- valgrind hides the CPU's SHA extensions, so the session route's SHA-256 of the cookie runs in software here: about 3,400 of its instructions, a few hundred on the CPU"
    echo "- $(valgrind --version), $(nginx -v 2>&1 | sed 's/^nginx version: //') upstream serving a $(stat -c %s "$work/www/index.html")-byte file"
    for note in "${notes[@]}"; do echo "- $note"; done
} >"$out"
log "results written to $out"
cat "$out"
