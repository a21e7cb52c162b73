#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/*.rs) for a bounded time
# each: the back-channel logout token, path canonicalisation + route
# matching, the return_to rule, the Cookie header parsers and gateway.toml
# parsing. Needs a nightly toolchain (cargo-fuzz uses -Zsanitizer);
# installs cargo-fuzz if it is missing.
#
#   scripts/fuzz.sh                          # 60 s per target
#   FUZZ_SECONDS=600 scripts/fuzz.sh         # longer
#   FUZZ_TARGETS="return_to path_route" scripts/fuzz.sh
#   FUZZ_RUNS=10000000 scripts/fuzz.sh       # a number of executions instead
#
# Prints executions and executions per second per target. Exit status is
# non-zero if any target finds a crash; the crashing input is kept under
# fuzz/artifacts/<target>/.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
runs_wanted="${FUZZ_RUNS:-}"
if [[ -n "${runs_wanted}" ]]; then
    limit=(-runs="${runs_wanted}") bound="${runs_wanted} executions"
else
    limit=(-max_total_time="${seconds}") bound="${seconds}s"
fi
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
targets="${FUZZ_TARGETS:-$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^portcullis-fuzz$')}"

if ! rustup toolchain list | grep -q "^${toolchain}"; then
    echo "fuzz.sh: no ${toolchain} toolchain; install it with: rustup toolchain install ${toolchain}" >&2
    echo "fuzz.sh: (without nightly, 'cargo test --lib mutated_bodies' runs a bounded deterministic loop)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# Keep the fuzz build's artefacts apart from the main target directory.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/fuzz/target}"
# Build every target first, so the time limits below are fuzzing time.
for target in $targets; do
    cargo "+${toolchain}" fuzz build "${target}"
done

status=0
summary=""
for target in $targets; do
    # Start from the committed seeds; new corpus entries stay local (ignored).
    mkdir -p "fuzz/corpus/${target}"
    log="$(mktemp)"
    echo "== ${target}: ${bound}"
    if ! cargo "+${toolchain}" fuzz run "${target}" -- \
        "${limit[@]}" -max_len=20000 -timeout=10 -print_final_stats=1 \
        >"${log}" 2>&1; then
        status=1
        tail -n 40 "${log}"
        echo "fuzz.sh: ${target} found a crash (see fuzz/artifacts/${target}/)" >&2
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "${log}" | tail -n 1)
    took=$(sed -n 's/^stat::average_exec_per_sec: *//p' "${log}" | tail -n 1)
    summary+=$(printf '%-16s %12s executions  %8s exec/s\n' "${target}" "${runs:-?}" "${took:-?}")$'\n'
    rm -f "${log}"
done
echo "== summary (${bound} per target)"
printf '%s' "${summary}"
exit "${status}"
