#!/usr/bin/env bash
# The project's one test command (CI runs it through .ci/run):
#   test dependencies, formatting, lints, the test suite (which also runs
#   tests/smoke.sh against a real IdP + gateway + app, see tests/smoke.rs).
# Every check runs even after one fails, so one run shows every problem; the
# exit status is non-zero if any failed. The test runner's summary is
# repeated at the very end.
set -uo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-auto}
failed=()
summary=""
problems=""

if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold="" plain=""; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$1" "$plain"; }

# run NAME CMD...: runs a check and records a failure.
run() {
    local name=$1
    shift
    step "$name"
    "$@" || failed+=("$name")
}

step "test dependencies (scripts/test-deps.sh)"
if ! scripts/test-deps.sh; then
    echo "test.sh: installing test dependencies failed; the tests cannot run" >&2
    exit 1
fi

run "format (cargo fmt --check)" cargo fmt --all -- --check
run "lints (cargo clippy)" cargo clippy --workspace --all-targets --all-features -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# PORTCULLIS_NO_NEXTEST=1 forces plain cargo test.
if [[ -z ${PORTCULLIS_NO_NEXTEST:-} ]] && cargo nextest --version >/dev/null 2>&1; then
    # nextest: one process per test (gateways, signals and env never leak
    # between tests) and per-test time limits from .config/nextest.toml, so
    # a hung test fails in minutes instead of eating CI's budget.
    run "doc tests (cargo test --doc)" cargo test --doc
    step "tests (cargo nextest run)"
    cargo nextest run --all-targets --no-fail-fast 2>&1 | tee "$log" || failed+=("tests")
    summary=$(grep -E '^ *Summary \[' "$log" | tail -n 1)
    # The names of failed, timed-out and flaky tests, for the result block.
    problems=$(grep -E '^ *(FAIL|TIMEOUT|SIG[A-Z]+|LEAK(-FAIL)?|FLAKY|TRY [0-9]+ (FAIL|TIMEOUT|SIG[A-Z]+)) +\[' "$log" | sed -E 's/^ +//' | sort -u)
else
    step "tests (cargo test; install cargo-nextest for per-test isolation)"
    cargo test --all-targets --no-fail-fast 2>&1 | tee "$log" || failed+=("tests")
    summary=$(grep -E '^test result:' "$log" | awk '
        { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
        END { printf "%d passed, %d failed, %d skipped", p, f, s }')
fi

# Every fuzz target (logout token, paths + routes, return_to, Cookie,
# gateway.toml), 30 s each: the fuzzing stays within 3 minutes (the build
# comes first). cargo-fuzz needs the nightly toolchain this machine kind
# ships; scripts/fuzz.sh says so and fails when it is missing.
run "fuzz (scripts/fuzz.sh, ${FUZZ_SECONDS:=30}s per target)" env FUZZ_SECONDS="$FUZZ_SECONDS" scripts/fuzz.sh

step "result"
[[ -n $summary ]] && echo "$summary"
[[ -n $problems ]] && printf '%s\n' "$problems"
if ((${#failed[@]})); then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "all checks passed"
