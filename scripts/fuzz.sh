#!/usr/bin/env bash
# Runs the back-channel logout token fuzz target (fuzz/fuzz_targets/
# logout_token.rs) for a bounded time. Needs a nightly toolchain (cargo-fuzz
# uses -Zsanitizer); installs cargo-fuzz if it is missing.
#
#   scripts/fuzz.sh            # 60 s
#   FUZZ_SECONDS=600 scripts/fuzz.sh
#
# Exit status is non-zero if the fuzzer finds a crash; the crashing input is
# kept under fuzz/artifacts/logout_token/.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"

if ! rustup toolchain list | grep -q "^${toolchain}"; then
    echo "fuzz.sh: no ${toolchain} toolchain; install it with: rustup toolchain install ${toolchain}" >&2
    echo "fuzz.sh: (without nightly, 'cargo test --lib mutated_bodies' runs a bounded deterministic loop)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# Start from the committed seeds; new corpus entries stay local (ignored).
mkdir -p fuzz/corpus/logout_token
# Keep the fuzz build's artefacts apart from the main target directory.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/fuzz/target}"
exec cargo "+${toolchain}" fuzz run logout_token -- \
    -max_total_time="${seconds}" -max_len=20000 -timeout=10
