#!/usr/bin/env bash
# Side-by-side throughput and latency of Portcullis against nginx, in one run
# on this machine (see bench/README.md):
#   (a) upstream    nginx serving a small static file
#   (b) nginx-proxy nginx proxy_pass (upstream keepalive) to (a)
#   (c) portcullis  an auth = "none" route to (a)
#   (d) portcullis  an auth = "session" route to (a), with a session cookie
#                   from a real login at the test IdP (skipped, with a note,
#                   when that cannot be done)
# Everything listens on 127.0.0.1 only, every load is bounded in time, and
# every process started here is stopped on exit.
#
# usage: bench/run.sh [--targets a,b,c,d] [--duration 10s] [--threads 2]
#                     [--connections 32] [--warmup 2s] [--rounds 5]
#                     [--out bench/results.md]
# Every target is measured once per round, the targets taking turns, and
# the table shows each target's median round; the ratios to (a) and (b) are
# the medians of the ratios within each round, so a noisy moment on a shared
# machine weighs on one round, not on one target.
# PORTCULLIS_BIN=path skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=a,b,c,d duration=10s threads=2 connections=32 warmup=2s rounds=5 out=bench/results.md
while (($#)); do
    case $1 in
        --targets) targets=$2 ;;
        --duration) duration=$2 ;;
        --threads) threads=$2 ;;
        --connections) connections=$2 ;;
        --warmup) warmup=$2 ;;
        --rounds) rounds=$2 ;;
        --out) out=$2 ;;
        -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift 2
done
wants() { [[ ,$targets, == *,$1,* ]]; }

# shellcheck source=bench/lib.sh
source bench/lib.sh
need nginx=nginx-light wrk=wrk curl=curl

# cpu_ticks PID: CPU time (user + system, in clock ticks) used so far by PID
# and its direct children (nginx workers); threads count with their process.
cpu_ticks() {
    local pid=$1 total=0 p t
    for p in "$pid" $(ps -o pid= --ppid "$pid"); do
        # Fields 14 and 15 of /proc/PID/stat, counted after the ")" that ends
        # the command name (which may contain spaces).
        t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
        total=$((total + ${t:-0}))
    done
    echo "$total"
}
clk_tck=$(getconf CLK_TCK)

# rss_kb PID: resident memory of PID and its direct children (nginx workers).
rss_kb() {
    local pid=$1 total=0 kb
    for kb in $(ps -o rss= -p "$pid") $(ps -o rss= --ppid "$pid"); do total=$((total + kb)); done
    echo "$total"
}

# --- measuring -------------------------------------------------------------------
wrk_cmd=(wrk -t"$threads" -c"$connections" -d"$duration" --latency)
rows=()
notes=()

# to_ms VALUE: wrk's "1.23ms" / "456.00us" / "1.01s" in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n }'
}

# register KEY LABEL URL PID [HEADER]: a running server to measure in every
# round (HEADER, when given, is sent with every request).
declare -A t_label t_url t_pid t_header
order=()
register() {
    t_label[$1]=$2 t_url[$1]=$3 t_pid[$1]=$4 t_header[$1]=${5:-}
    order+=("$1")
}

# One round's figures per target: res[KEY,ROUND] = "r|p50|p90|p99|bad|cpu|rss".
declare -A res

# measure KEY ROUND: warm-up and one measured run of a registered target.
measure() {
    local key=$1 round=$2
    local label=${t_label[$key]} url=${t_url[$key]} pid=${t_pid[$key]}
    local args=()
    [[ -n ${t_header[$key]} ]] && args=(-H "${t_header[$key]}")
    set -- "${args[@]}"
    local before after res_text cpu0 cpu1
    before=$(rss_kb "$pid")
    log "($key) round $round/$rounds, $label: warm-up $warmup"
    wrk -t"$threads" -c"$connections" -d"$warmup" "$@" "$url" >/dev/null
    log "($key) $label: ${wrk_cmd[*]}${*:+ $*} $url"
    cpu0=$(cpu_ticks "$pid")
    res_text=$("${wrk_cmd[@]}" "$@" "$url")
    cpu1=$(cpu_ticks "$pid")
    after=$(rss_kb "$pid")
    local r p50 p90 p99 bad n cpu
    r=$(awk '/^Requests\/sec:/ {print $2}' <<<"$res_text")
    # CPU time the server used per request during the measured run: less
    # sensitive than req/s to what else the machine is doing.
    n=$(awk '/ requests in / {print $1}' <<<"$res_text")
    cpu=$(awk -v t=$((cpu1 - cpu0)) -v hz="$clk_tck" -v n="${n:-0}" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "—" }')
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$res_text")")
    p90=$(to_ms "$(awk '$1 == "90%" {print $2}' <<<"$res_text")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$res_text")")
    bad=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$res_text")
    [[ -n $r ]] || die "($key) wrk printed no result: $res_text"
    if grep -q 'Socket errors' <<<"$res_text"; then
        notes+=("($key) $(grep 'Socket errors' <<<"$res_text" | sed 's/^ *//')")
    fi
    res[$key,$round]="$r|$p50|$p90|$p99|${bad:-0}|$cpu|$before → $after"
    log "($key) $r req/s, p50 ${p50} ms, p99 ${p99} ms, non-2xx ${bad:-0}, server CPU ${cpu} µs/req"
}

# ratios KEY BASE: the per-round ratios rps(KEY)/rps(BASE), space-separated.
ratios() {
    local i out=()
    for ((i = 1; i <= rounds; i++)); do
        out+=("$(awk -v a="${res[$1,$i]%%|*}" -v b="${res[$2,$i]%%|*}" 'BEGIN { printf "%.2f", a / b }')")
    done
    echo "${out[*]}"
}

# median WORDS...: the middle value (the lower middle for an even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# ratio KEY BASE: the median per-round ratio, or "—" when BASE was not measured.
ratio() {
    if [[ -n ${t_pid[$1]:-} && -n ${t_pid[$2]:-} ]]; then
        # shellcheck disable=SC2046
        median $(ratios "$1" "$2")
    else
        echo "—"
    fi
}

# --- (a) the upstream: nginx serving a small static file ------------------------------
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# cpu_stat: "steal total" clock ticks of the whole machine so far. On a
# virtual machine, time the hypervisor gives to other guests ("steal") is
# what makes one round much slower than the others.
cpu_stat() { awk 'NR == 1 { t = 0; for (i = 2; i <= NF; i++) t += $i; print $9, t }' /proc/stat; }
read -r steal0 total0 < <(cpu_stat)
start_upstream
wants a && register a "upstream (nginx static)" "$upstream/" "$up_pid"

# --- (b) nginx as a plain reverse proxy ---------------------------------------------------------
if wants b; then
    port=$(free_port)
    start_proxy "$port" auto
    register b "nginx proxy_pass, keepalive" "http://127.0.0.1:$port/" "$started"
fi

# --- Portcullis ---------------------------------------------------------------------------------
if wants c || wants d; then
    build_portcullis
fi

if wants c; then
    port=$(free_port)
    start_none "$port" || die "portcullis did not start for (c); see above"
    register c "portcullis, auth = \"none\"" "http://127.0.0.1:$port/" "$started"
fi

# --- (d) an authenticated route --------------------------------------------------------------------
# The session comes from a real login at the test IdP (tests/idp), scripted
# with curl; any step that is not possible yet skips (d) with a note.
if wants d; then
    if start_session; then
        register d "portcullis, auth = \"session\" (cookie)" "$session_url" "$session_pid" "$session_cookie"
    else
        notes+=("(d) skipped: $skip_reason")
        log "(d) skipped: $skip_reason"
    fi
fi

# --- the rounds ------------------------------------------------------------------------------------
((${#order[@]})) || die "nothing to measure (--targets $targets)"
for ((round = 1; round <= rounds; round++)); do
    for key in "${order[@]}"; do measure "$key" "$round"; done
done
# Each target's row is its median round by req/s.
for key in "${order[@]}"; do
    rates=()
    for ((round = 1; round <= rounds; round++)); do rates+=("${res[$key,$round]%%|*}"); done
    mid=$(median "${rates[@]}")
    for ((round = 1; round <= rounds; round++)); do
        if [[ ${res[$key,$round]%%|*} == "$mid" ]]; then
            rows+=("$key|${t_label[$key]}|${res[$key,$round]}")
            break
        fi
    done
done

read -r steal1 total1 < <(cpu_stat)
steal_pct=$(awk -v s=$((steal1 - steal0)) -v t=$((total1 - total0)) 'BEGIN { if (t > 0) printf "%.1f", 100 * s / t; else print "—" }')

# The source measured, named before the results file is (re)written.
revision=$(git describe --always --dirty --exclude '*' 2>/dev/null || echo unknown)

# --- results ----------------------------------------------------------------------------------------
((${#rows[@]})) || die "nothing was measured (--targets $targets)"
{
    echo "# Benchmark results"
    echo
    echo "Written by \`bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); see bench/README.md for what is measured and how to read it."
    echo
    echo "| | target | req/s | vs (a) | vs (b) | vs (b) each round | p50 ms | p90 ms | p99 ms | non-2xx | server CPU µs/req | RSS kB before → after |"
    echo "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|"
    for row in "${rows[@]}"; do
        IFS='|' read -r key label r p50 p90 p99 bad cpu mem <<<"$row"
        each=—
        [[ -n ${t_pid[b]:-} ]] && each=$(ratios "$key" b)
        printf '| (%s) | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
            "$key" "$label" "$r" "$(ratio "$key" a)" "$(ratio "$key" b)" "$each" "$p50" "$p90" "$p99" "$bad" "$cpu" "$mem"
    done
    echo
    echo "Machine and parameters:"
    echo
    echo "- $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -sr)"
    echo "- load average before the run: $load_before (other work on the machine skews absolute figures; compare ratios)"
    echo "- CPU time stolen by the hypervisor during the run: ${steal_pct}% (other guests of a virtual machine; it is what makes one round slower than the rest)"
    echo "- load: \`${wrk_cmd[*]} URL\` after a ${warmup} warm-up with the same threads and connections, $rounds rounds with the targets taking turns; each row is the target's median round, ratios are medians of the per-round ratios; wrk, the proxy and the upstream share the cores"
    echo "- $(nginx -v 2>&1 | sed 's/^nginx version: //'): upstream 1 worker, static $(stat -c %s "$work/www/index.html")-byte file, \`access_log off\`; proxy \`worker_processes auto\`, \`keepalive 64\`"
    if wants c || wants d; then
        echo "- portcullis $revision, release build, RUST_LOG=${BENCH_RUST_LOG:-warn} (the per-request access log is still written, to a file)"
    fi
    for note in "${notes[@]}"; do echo "- $note"; done
} >"$out"
log "results written to $out"
cat "$out"
