#!/usr/bin/env bash
# Revocation propagation across a fleet on Redis, per deployment mode: 1,000
# logouts each, the time until each of three instances refuses the session
# (p50/p99/max), and what a logout itself costs (with a replica it includes
# `WAIT 1`). Starts its own Redis processes on free ports of 127.0.0.1
# (standalone; Sentinel: master + replica + 3 sentinels; Cluster: 3 masters),
# stops them on exit, and writes bench/propagation.md (quoted by the README).
#
# usage: bench/propagation.sh [--logouts 1000] [--out bench/propagation.md]
# PORTCULLIS_PROPAGATION_BIN=path skips the build of examples/propagation.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

logouts=1000 out=bench/propagation.md
while (($#)); do
    case $1 in
        --logouts) logouts=$2 ;;
        --out) out=$2 ;;
        -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "propagation: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift 2
done

bin=${PORTCULLIS_PROPAGATION_BIN:-}
profile=${PORTCULLIS_PROPAGATION_PROFILE:-debug}
if [[ -z $bin ]]; then
    if [[ $profile == release ]]; then
        cargo build --quiet --release --example propagation
    else
        cargo build --quiet --example propagation
    fi
    bin=target/$profile/examples/propagation
fi

load=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Between the test harness's port blocks (12000-31199) and the kernel's
# ephemeral range (32768-), bindable a moment ago together with port+10000
# (a cluster node's bus port).
free_port() {
    python3 -c '
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
while True:
    p = random.randint(31300, 32700)
    if free(p) and free(p + 10000):
        print(p); break'
}
wait_port() {
    for _ in $(seq 100); do
        redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "propagation: nothing answers on port $1" >&2
    exit 1
}
redis() { # port, more args...
    local port=$1
    shift
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --protected-mode no --dir "$work" "$@" >"$work/redis-$port.log" 2>&1 &
    pids+=($!)
    wait_port "$port"
}

rows=()

# Standalone.
p=$(free_port)
redis "$p"
rows+=("$("$bin" standalone "$logouts" server "redis://127.0.0.1:$p/0")")

# Standalone with a replica: the same server mode, now waiting for it.
p=$(free_port) r=$(free_port)
redis "$p"
redis "$r" --replicaof 127.0.0.1 "$p"
for _ in $(seq 100); do
    redis-cli -p "$r" info replication | grep -q master_link_status:up && break
    sleep 0.1
done
rows+=("$("$bin" "standalone + 1 replica (WAIT 1)" "$logouts" server "redis://127.0.0.1:$p/0")")

# Sentinel: master, replica, three sentinels.
m=$(free_port) r=$(free_port)
redis "$m"
redis "$r" --replicaof 127.0.0.1 "$m"
sentinels=()
for _ in 1 2 3; do
    s=$(free_port)
    printf 'port %s\nbind 127.0.0.1\nprotected-mode no\ndir %s\nsentinel monitor bench 127.0.0.1 %s 2\nsentinel down-after-milliseconds bench 5000\n' \
        "$s" "$work" "$m" >"$work/sentinel-$s.conf"
    redis-server "$work/sentinel-$s.conf" --sentinel >"$work/sentinel-$s.log" 2>&1 &
    pids+=($!)
    wait_port "$s"
    sentinels+=("redis://127.0.0.1:$s")
done
for _ in $(seq 100); do
    redis-cli -p "$r" info replication | grep -q master_link_status:up && break
    sleep 0.1
done
rows+=("$("$bin" "sentinel (1 replica: WAIT 1)" "$logouts" sentinel bench "${sentinels[@]}")")

# Cluster: three masters.
nodes=() addrs=()
for i in 1 2 3; do
    c=$(free_port)
    redis "$c" --cluster-enabled yes --cluster-config-file "$work/nodes-$c.conf"
    nodes+=("redis://127.0.0.1:$c")
    addrs+=("127.0.0.1:$c")
done
redis-cli --cluster create "${addrs[@]}" --cluster-yes >"$work/cluster-create.log"
for _ in $(seq 100); do
    redis-cli -p "${addrs[0]##*:}" cluster info | grep -q cluster_state:ok && break
    sleep 0.1
done
sleep 1
rows+=("$("$bin" "cluster (3 masters)" "$logouts" cluster "${nodes[@]}")")

{
    echo "# Revocation propagation"
    echo
    echo "Run by \`bench/propagation.sh --logouts $logouts\` on $(date -u '+%Y-%m-%d %H:%M UTC'),"
    echo "$(nproc) cores (load average before the run: $load), redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'),"
    echo "$profile build, all on loopback."
    echo "Three instances (session services with their own Redis connections,"
    echo "subscription and 60 s local cache) in one process; each logout on"
    echo "instance A after B and C cached the session. Times in ms from the start"
    echo "of the logout, as p50 / p99 / max."
    echo
    echo "| mode | logouts | logout itself | refused on A | refused on B | refused on C |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
} >"$out"
cat "$out"
