#!/usr/bin/env bash
# Side-by-side throughput and latency of Portcullis against nginx and Apache,
# in one run on this machine (see bench/README.md):
#   (a) upstream      nginx serving a small static file (2 workers, so it is
#                     never the bottleneck: (a) must come out well above (b))
#   (b) nginx-proxy   nginx proxy_pass (upstream keepalive) to (a)
#   (c) none          Portcullis, an auth = "none" route to (a)
#   (d) session       Portcullis, a session route (memory store), with a
#                     cookie from a real login at the test IdP
#   (e) redis         the same with store = "redis" (a redis-server of its own)
#   (f) apache        Apache + mod_auth_openidc with a session at the same IdP
#   (g) forward-auth  nginx auth_request → Portcullis /.portcullis/auth, then
#                     nginx proxy_pass to (a)
# A target that cannot be set up (no IdP, no forward-auth endpoint, ...) is
# skipped with a line in the results. Then, at a fixed rate of half (b)'s
# measured throughput, the latency of (b), (d) and (e) with h2load.
# Everything listens on 127.0.0.1 only, every load is bounded in time, and
# every process started here is stopped on exit.
#
# usage: bench/run.sh [--targets a,b,c,d,e,f,g] [--no-apache] [--duration 10s]
#                     [--threads 2] [--connections 32] [--warmup 2s]
#                     [--rounds 5] [--latency-targets b,d,e]
#                     [--latency-duration 15s] [--latency-connections 64]
#                     [--latency-rounds 3] [--out bench/results.md]
# Every target is measured once per round, the targets taking turns, and
# the table shows each target's median round; the ratios to (b) are the
# medians of the ratios within each round, so a noisy moment on a shared
# machine weighs on one round, not on one target. The chart goes next to
# --out, as .svg. PORTCULLIS_BIN=path skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=a,b,c,d,e,f,g duration=10s threads=2 connections=32 warmup=2s rounds=5 out=bench/results.md
lat_targets=b,d,e lat_duration=15s lat_connections=64 lat_rounds=3 no_apache=
command_line="bench/run.sh $*"
while (($#)); do
    case $1 in
        --targets) targets=$2 ;;
        --no-apache) no_apache=1; shift; continue ;;
        --duration) duration=$2 ;;
        --threads) threads=$2 ;;
        --connections) connections=$2 ;;
        --warmup) warmup=$2 ;;
        --rounds) rounds=$2 ;;
        --latency-targets) lat_targets=$2 ;;
        --latency-duration) lat_duration=$2 ;;
        --latency-connections) lat_connections=$2 ;;
        --latency-rounds) lat_rounds=$2 ;;
        --out) out=$2 ;;
        -h | --help) sed -n '2,29p' "$0"; exit 0 ;;
        *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift 2
done
[[ -z $no_apache ]] || targets=${targets//f/}
wants() { [[ ,$targets, == *,$1,* ]]; }
chart=${out%.md}.svg
mkdir -p "$(dirname "$out")"

# shellcheck source=bench/lib.sh
source bench/lib.sh
# shellcheck source=bench/peers.sh
source bench/peers.sh
# The bench's own tools (not the test suite's): the peers and the loads.
tools=(nginx=nginx-light wrk=wrk curl=curl h2load=nghttp2-client python3=python3)
wants e && tools+=(redis-server=redis-server)
wants f && { tools+=(apache2=apache2); [[ -f /usr/lib/apache2/modules/mod_auth_openidc.so ]] || tools+=(mod-auth-openidc=libapache2-mod-auth-openidc); }
need "${tools[@]}"

# cpu_ticks PID...: CPU time (user + system, in clock ticks) used so far by
# the PIDs and their direct children (nginx and Apache workers); threads
# count with their process.
cpu_ticks() {
    local total=0 p t
    for p in "$@" $(for q in "$@"; do ps -o pid= --ppid "$q"; done); do
        # Fields 14 and 15 of /proc/PID/stat, counted after the ")" that ends
        # the command name (which may contain spaces).
        t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
        total=$((total + ${t:-0}))
    done
    echo "$total"
}
clk_tck=$(getconf CLK_TCK)

# rss_kb PID...: resident memory of the PIDs and their direct children.
rss_kb() {
    local total=0 kb
    for kb in $(ps -o rss= -p "${*// /,}") $(for q in "$@"; do ps -o rss= --ppid "$q"; done); do total=$((total + kb)); done
    echo "$total"
}

# --- measuring -------------------------------------------------------------------
wrk_cmd=(wrk -t"$threads" -c"$connections" -d"$duration" --latency)
notes=()

# to_ms VALUE: wrk's "1.23ms" / "456.00us" / "1.01s" in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n }'
}

# register KEY LABEL URL PIDS [HEADER]: running servers (PIDS, space-
# separated: all whose CPU the target costs) to measure in every round
# (HEADER, when given, is sent with every request).
declare -A t_label t_url t_pid t_header
order=()
register() {
    t_label[$1]=$2 t_url[$1]=$3 t_pid[$1]=$4 t_header[$1]=${5:-}
    order+=("$1")
}
# skip KEY REASON: a target that could not be set up, said in the results.
skip() {
    notes+=("($1) skipped: $2")
    log "($1) skipped: $2"
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
    # shellcheck disable=SC2086 # a list of pids
    before=$(rss_kb $pid)
    log "($key) round $round/$rounds, $label: warm-up $warmup"
    wrk -t"$threads" -c"$connections" -d"$warmup" "$@" "$url" >/dev/null
    log "($key) $label: ${wrk_cmd[*]}${*:+ $*} $url"
    # shellcheck disable=SC2086
    cpu0=$(cpu_ticks $pid)
    res_text=$("${wrk_cmd[@]}" "$@" "$url")
    # shellcheck disable=SC2086
    cpu1=$(cpu_ticks $pid)
    # shellcheck disable=SC2086
    after=$(rss_kb $pid)
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
        notes+=("($key) round $round: $(grep 'Socket errors' <<<"$res_text" | sed 's/^ *//')")
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

# --- the servers -----------------------------------------------------------------------------
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# cpu_stat: "steal total" clock ticks of the whole machine so far. On a
# virtual machine, time the hypervisor gives to other guests ("steal") is
# what makes one round much slower than the others.
cpu_stat() { awk 'NR == 1 { t = 0; for (i = 2; i <= NF; i++) t += $i; print $9, t }' /proc/stat; }
read -r steal0 total0 < <(cpu_stat)

# (a) the upstream.
start_upstream
wants a && register a "upstream (nginx static, 2 workers)" "$upstream/" "$up_pid"

# (b) nginx as a plain reverse proxy.
if wants b; then
    port=$(free_port)
    start_proxy "$port" auto
    register b "nginx proxy_pass, keepalive" "http://127.0.0.1:$port/" "$started"
fi

if wants c || wants d || wants e || wants g; then
    build_portcullis
fi

# (c) an auth = "none" route.
if wants c; then
    port=$(free_port)
    start_none "$port" || die "portcullis did not start for (c); see above"
    register c "portcullis, auth = \"none\"" "http://127.0.0.1:$port/" "$started"
fi

# (d)–(g) log in at the test IdP, which must know every redirect URI before
# it starts: every port is chosen first.
d_port=$(free_port) e_port=$(free_port) f_port=$(free_port) g_port=$(free_port) g_gw_port=$(free_port)
if wants d || wants e || wants f || wants g; then
    if start_idp "http://127.0.0.1:$d_port/.portcullis/callback" "http://127.0.0.1:$e_port/.portcullis/callback" \
        "http://127.0.0.1:$f_port/protected/redirect_uri" "http://127.0.0.1:$g_port/.portcullis/callback"; then
        idp_up=1
    else
        idp_up=
        for key in d e f g; do wants $key && skip $key "$skip_reason"; done
    fi
fi

if wants d && [[ -n $idp_up ]]; then
    if start_session d "$d_port"; then
        register d "portcullis, session route (memory store)" "$session_url" "$session_pid" "$session_cookie"
    else
        skip d "$skip_reason"
    fi
fi

if wants e && [[ -n $idp_up ]]; then
    start_redis
    if start_session e "$e_port" "store = \"redis\"
[session.redis]
url = \"$redis_url\""; then
        register e "portcullis, session route (Redis store)" "$session_url" "$session_pid $redis_pid" "$session_cookie"
    else
        skip e "$skip_reason"
    fi
fi

if wants f && [[ -n $idp_up ]]; then
    if start_apache "$f_port"; then
        register f "Apache + mod_auth_openidc, session" "$apache_url" "$apache_pid" "$apache_cookie"
    else
        skip f "$skip_reason"
    fi
fi

if wants g && [[ -n $idp_up ]]; then
    if start_forward_auth "$g_port" "$g_gw_port"; then
        register g "nginx auth_request → portcullis /.portcullis/auth" "$fa_url" "$fa_pids" "$fa_cookie"
    else
        skip g "$skip_reason"
    fi
fi

# --- throughput: the rounds --------------------------------------------------------------------
((${#order[@]})) || die "nothing to measure (--targets $targets)"
for ((round = 1; round <= rounds; round++)); do
    for key in "${order[@]}"; do measure "$key" "$round"; done
done
# Each target's row is its median round by req/s.
declare -A row
for key in "${order[@]}"; do
    rates=()
    for ((round = 1; round <= rounds; round++)); do rates+=("${res[$key,$round]%%|*}"); done
    mid=$(median "${rates[@]}")
    for ((round = 1; round <= rounds; round++)); do
        if [[ ${res[$key,$round]%%|*} == "$mid" ]]; then
            row[$key]=${res[$key,$round]}
            break
        fi
    done
done

# --- latency at a fixed rate -------------------------------------------------------------------
# h2load sends at a fixed rate per connection (--rps) whatever the answers
# do. It times each request from when it is written, so a request held back
# because its connection was still busy would hide its wait (coordinated
# omission): the rate is spread over many connections so that at half load
# a connection is nearly always idle when its next request is due, and the
# rate h2load reached is reported next to the one asked for.
declare -A lat
lat_rate=
lat_order=()
if [[ -n ${row[b]:-} ]]; then
    lat_rate=$(awk -v r="${row[b]%%|*}" 'BEGIN { printf "%d", r / 2 }')
    per_conn=$(awk -v r="$lat_rate" -v c="$lat_connections" 'BEGIN { printf "%.2f", r / c }')
    for key in b d e; do
        [[ ,$lat_targets, == *,$key,* && -n ${t_pid[$key]:-} ]] && lat_order+=("$key")
    done
elif [[ -n $lat_targets ]]; then
    notes+=("latency at a fixed rate not measured: it needs (b)'s throughput")
fi
# fixed_rate KEY ROUND: one h2load run at $lat_rate; lat[KEY,ROUND] =
# "p50|p99|p99.9|reached req/s|not succeeded" (ms).
fixed_rate() {
    local key=$1 round=$2 args=() text log_file=$work/h2load-$1-$2.tsv
    [[ -n ${t_header[$key]} ]] && args=(-H "${t_header[$key]}")
    local cmd=(h2load --h1 -t1 -c"$lat_connections" --rps="$per_conn" "${args[@]}")
    log "($key) fixed rate $lat_rate req/s, round $round/$lat_rounds: warm-up 2s"
    "${cmd[@]}" -D2 "${t_url[$key]}" >/dev/null
    log "($key) ${cmd[*]} -D${lat_duration%s} --log-file=... ${t_url[$key]}"
    text=$("${cmd[@]}" -D"${lat_duration%s}" --log-file="$log_file" "${t_url[$key]}")
    local reached failed figures
    reached=$(awk '/^finished in/ { gsub(",", "", $4); print $4 }' <<<"$text")
    # Requests that did not succeed: total minus succeeded.
    failed=$(awk '/^requests:/ { print $2 - $8 }' <<<"$text")
    # Columns: start (µs since the epoch), status, µs to the end of the response.
    figures=$(cut -f3 "$log_file" | sort -n | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "—|—|—"; exit }
        printf "%.3f|%.3f|%.3f", v[int(NR * 0.5) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000, v[int(NR * 0.999) + 1] / 1000 }')
    lat[$key,$round]="$figures|${reached:-0}|$failed"
    # A target that cannot keep up holds requests back, and h2load does not
    # count their wait: say so rather than quote a flattering figure.
    if awk -v r="${reached:-0}" -v w="$lat_rate" 'BEGIN { exit !(r < 0.95 * w) }'; then
        notes+=("($key) fixed-rate round $round reached only ${reached:-0} of $lat_rate req/s: it did not keep up, and its latency figures leave out the time requests waited to be sent")
    fi
    log "($key) p50|p99|p99.9 ms: $figures; reached ${reached:-?} req/s; not succeeded: $failed"
}
for ((round = 1; round <= lat_rounds; round++)); do
    for key in "${lat_order[@]}"; do fixed_rate "$key" "$round"; done
done
# Each target's latency row is its median round by p99.
declare -A lat_row
for key in "${lat_order[@]}"; do
    p99s=()
    for ((round = 1; round <= lat_rounds; round++)); do p99s+=("$(cut -d'|' -f2 <<<"${lat[$key,$round]}")"); done
    mid=$(median "${p99s[@]}")
    for ((round = 1; round <= lat_rounds; round++)); do
        if [[ $(cut -d'|' -f2 <<<"${lat[$key,$round]}") == "$mid" ]]; then
            lat_row[$key]="${lat[$key,$round]}|${p99s[*]}"
            break
        fi
    done
done

read -r steal1 total1 < <(cpu_stat)
steal_pct=$(awk -v s=$((steal1 - steal0)) -v t=$((total1 - total0)) 'BEGIN { if (t > 0) printf "%.1f", 100 * s / t; else print "—" }')

# The source measured, named before the results file is (re)written.
revision=$(git describe --always --dirty --exclude '*' 2>/dev/null || echo unknown)

# --- results ----------------------------------------------------------------------------------------
# The chart's data: target, label, req/s, ratio to (b), fixed-rate p99.
: >"$work/chart.tsv"
for key in "${order[@]}"; do
    p99=
    [[ -n ${lat_row[$key]:-} ]] && p99=$(cut -d'|' -f2 <<<"${lat_row[$key]}")
    printf '%s\t%s\t%s\t%s\t%s\n' "$key" "${t_label[$key]}" "${row[$key]%%|*}" "$(ratio "$key" b)" "$p99" >>"$work/chart.tsv"
done
python3 bench/chart.py "$work/chart.tsv" "$chart" "${lat_rate:-}" || die "the chart was not drawn"

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
cpu_b=$(cut -d'|' -f6 <<<"${row[b]:-||||||}")
{
    echo "# Benchmark results"
    echo
    echo "Written by \`bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); see bench/README.md for what is measured and how to read it."
    echo
    echo "**Machine:** $(nproc) cores, ${cpu_model:-unknown CPU}, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -sr). **CPU stolen by the hypervisor during the run: ${steal_pct}%.** Command: \`$command_line\`."
    echo
    echo "## Throughput"
    echo
    echo "| | target | req/s | vs (b) | vs (b) each round | p50 ms | p90 ms | p99 ms | non-2xx | server CPU µs/req | CPU vs (b) | RSS kB before → after |"
    echo "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"
    for key in "${order[@]}"; do
        IFS='|' read -r r p50 p90 p99 bad cpu mem <<<"${row[$key]}"
        each=—
        [[ -n ${t_pid[b]:-} ]] && each=$(ratios "$key" b)
        cpu_ratio=$(awk -v a="$cpu" -v b="$cpu_b" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "—" }')
        printf '| (%s) | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
            "$key" "${t_label[$key]}" "$r" "$(ratio "$key" b)" "$each" "$p50" "$p90" "$p99" "$bad" "$cpu" "$cpu_ratio" "$mem"
    done
    echo
    if [[ -n ${row[a]:-} && -n ${row[b]:-} ]]; then
        ab=$(ratio a b)
        if awk -v r="$ab" 'BEGIN { exit !(r >= 1.3) }'; then
            echo "The upstream alone, (a), served ${ab}× what nginx's proxy, (b), did: the upstream was not what limited (b) or any target below it."
        else
            echo "**Warning:** the upstream alone, (a), served only ${ab}× what nginx's proxy, (b), did: the upstream may have limited the proxies, which squeezes every ratio toward 1."
        fi
        echo
    fi
    if ((${#lat_order[@]})); then
        echo "## Latency at a fixed rate"
        echo
        echo "$lat_rate req/s (half of (b)'s throughput above), spread over $lat_connections connections; each row is the target's median round of $lat_rounds by p99."
        echo
        echo "| | target | p50 ms | p99 ms | p99.9 ms | p99 each round | reached req/s | not succeeded |"
        echo "|---|---|---:|---:|---:|---|---:|---:|"
        for key in "${lat_order[@]}"; do
            IFS='|' read -r p50 p99 p999 reached failed each <<<"${lat_row[$key]}"
            printf '| (%s) | %s | %s | %s | %s | %s | %.0f | %s |\n' "$key" "${t_label[$key]}" "$p50" "$p99" "$p999" "$each" "$reached" "$failed"
        done
        echo
    fi
    echo "![throughput and fixed-rate p99 per target]($(basename "$chart"))"
    echo
    echo "## How it was measured"
    echo
    echo "- load average before the run: $load_before (other work on the machine skews absolute figures; compare ratios)"
    echo "- throughput: \`${wrk_cmd[*]} URL\` after a ${warmup} warm-up with the same threads and connections, $rounds rounds with the targets taking turns; each row is the target's median round, ratios are medians of the per-round ratios; wrk, the proxies and the upstream share the cores"
    echo "- server CPU: user + system time of the target's own processes over the measured run, divided by its requests ((e) counts redis-server too, (g) nginx and Portcullis; the upstream's is never counted except in (a))"
    if ((${#lat_order[@]})); then
        echo "- fixed rate: \`h2load --h1 -t1 -c$lat_connections --rps=$per_conn -D${lat_duration%s} URL\` after a 2 s run at the same rate; percentiles of every request in h2load's --log-file (timed from when the request is written: see bench/README.md on coordinated omission)"
    fi
    echo "- $(nginx -v 2>&1 | sed 's/^nginx version: //'): upstream ${BENCH_UPSTREAM_WORKERS:-2} workers, static $(stat -c %s "$work/www/index.html")-byte file, \`access_log off\`; proxies \`worker_processes auto\`, \`keepalive 64\`"
    if [[ -n ${t_pid[c]:-}${t_pid[d]:-}${t_pid[e]:-}${t_pid[g]:-} ]]; then
        echo "- portcullis $revision ($portcullis_bin), RUST_LOG=${BENCH_RUST_LOG:-warn} (the per-request access log is still written, to a file); the Redis store with its default \`cache_ttl\` (5 s)"
    fi
    if [[ -n ${t_pid[f]:-} ]]; then
        echo "- $(apache2 -v | sed -n 's/^Server version: //p'), event MPM (2 processes × 64 threads), mod_auth_openidc $(dpkg-query -W -f '${Version}' libapache2-mod-auth-openidc 2>/dev/null || echo '?') with its default shared-memory session cache, no access log"
    fi
    for note in "${notes[@]}"; do echo "- $note"; done
} >"$out"
log "results written to $out and $chart"
cat "$out"
