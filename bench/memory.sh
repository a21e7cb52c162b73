#!/usr/bin/env bash
# Memory per session: fills the memory store with live sessions through the
# same call a login makes (examples/fill_sessions.rs) and writes the
# resident memory and bytes per session to bench/memory.md.
#
# usage: bench/memory.sh [--sessions 1000000] [--out bench/memory.md]
#                        [-- extra fill_sessions arguments, e.g. --id-token-bytes 1500]
# FILL_SESSIONS_BIN=path skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."

sessions=1000000 out=bench/memory.md extra=()
while (($#)); do
    case $1 in
        --sessions) sessions=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
log() { printf 'bench: %s\n' "$*" >&2; }

bin=${FILL_SESSIONS_BIN:-}
if [[ -z $bin ]]; then
    log "building examples/fill_sessions.rs (release)"
    cargo build --release --quiet --features bench-tools --example fill_sessions
    target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    bin=$target_dir/release/examples/fill_sessions
fi

log "$bin --sessions $sessions ${extra[*]}"
result=$("$bin" --sessions "$sessions" "${extra[@]}")
get() { awk -F '\t' -v k="$1" '$1 == k { print $2 }' <<<"$result"; }
after_kb=$(get rss_after_kb)
total_mib=$(awk -v k="$after_kb" 'BEGIN { printf "%.0f", k / 1024 }')
verdict="within"
((after_kb <= 1024 * 1024)) || verdict="over"
revision=$(git describe --always --dirty --exclude '*' 2>/dev/null || echo unknown)
mkdir -p "$(dirname "$out")"
{
    echo "# Memory per session"
    echo
    echo "Written by \`bench/memory.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); see bench/README.md."
    echo
    echo "| sessions | resident memory after | bytes per session | sealed record | tokens per session | 1 GiB target |"
    echo "|---:|---:|---:|---:|---:|---|"
    printf '| %s | %s MiB | %s | %s bytes | %s bytes | %s |\n' "$(get sessions)" "$total_mib" "$(get bytes_per_session)" \
        "$(get sealed_record_bytes)" "$(get tokens_bytes_per_session)" "$verdict"
    echo
    echo "- command: \`bench/memory.sh --sessions $sessions${extra[*]:+ -- ${extra[*]}}\`; portcullis $revision (\`$bin\`), mimalloc as in the gateway"
    echo "- each session is a different user, created with \`Sessions::create\` (the login's call) in the memory store: an RS256 ID token shaped like the test IdP's, 43-character opaque access and refresh tokens; sealed with AES-256-GCM, indexed by \`sid\` and \`sub\`"
    echo "- bytes per session: the growth of the process's resident memory over the fill ($(get rss_before_kb) kB before, $after_kb kB after), divided by the sessions; filled in $(get seconds) s"
    echo "- the store's default bound (256 MiB, each session counted as its sealed record plus $(get entry_overhead_bytes) bytes) holds $(get default_bound_sessions) sessions of this size; the fill used an unbounded store so that none was evicted"
} >"$out"
log "results written to $out"
cat "$out"
